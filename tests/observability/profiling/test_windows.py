"""Folding samples into windows, shares and merges: pure logic, no processes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observability.profiling import (
    AustinSample,
    ProfileWindow,
    StackFrame,
    WindowFolder,
    WindowLabels,
    collapse,
    merge_windows,
)

LABELS = WindowLabels(host="h", group="g", pid=7, actors=("a", "b"), version="1.0")


def frame(name: str, file: str = "m.py") -> StackFrame:
    return StackFrame(name, file, 1)


def sample(*names: str, cpu_us: int = 10_000) -> AustinSample:
    return AustinSample(7, "0:7", tuple(frame(n) for n in names), cpu_us)


def test_collapse_joins_file_and_function_outermost_first_without_line_numbers():
    stack = (StackFrame("main", "/a/m.py", 3), StackFrame("Worker.spin", "/a/w.py", 99))
    assert collapse(stack) == "/a/m.py:main;/a/w.py:Worker.spin"
    assert collapse(()) == "<no Python frames>"
    assert collapse((StackFrame("f", "odd;name.py", 1),)) == "odd,name.py:f"


def test_window_closes_on_the_next_multiple_of_its_length_and_counts_stacks():
    folder = WindowFolder(LABELS, now=1003.0, length=10.0)
    assert folder.add(sample("main", "work"), 1004.0) == []
    assert folder.add(sample("main", "work"), 1005.0) == []
    assert folder.add(sample("main", "idle"), 1009.9) == []
    (window,) = folder.add(sample("main"), 1010.0)
    assert (window.start, window.end) == (1003.0, 1010.0)
    assert window.labels == LABELS
    assert window.samples == 3
    assert window.cpu_us == 30_000
    assert window.stacks == {"m.py:main;m.py:work": 2, "m.py:main;m.py:idle": 1}
    (nxt,) = folder.tick(1020.0)
    assert (nxt.start, nxt.end, nxt.samples) == (1010.0, 1020.0, 1)


def test_self_and_inclusive_shares_count_leaves_and_every_function_on_the_stack_once():
    window = ProfileWindow(LABELS, 0.0, 60.0, samples=10, cpu_us=0, stacks={"m;f;g": 6, "m;f": 3, "m;r;r": 1})
    shares = {s.function: s for s in window.function_shares()}
    assert [s.function for s in window.function_shares()][:2] == ["g", "f"]
    assert (shares["g"].self_share, shares["g"].inclusive_share) == (0.6, 0.6)
    assert (shares["f"].self_share, shares["f"].inclusive_share) == (0.3, 0.9)
    assert (shares["m"].self_share, shares["m"].inclusive_share) == (0.0, 1.0)
    assert shares["r"].inclusive_samples == 1, "recursion counts a sample once"


def test_handled_is_the_delta_of_the_stats_counters_within_each_window():
    folder = WindowFolder(LABELS, now=100.0, length=10.0)
    folder.observe_handled({"a": 500, "b": 10}, 101.0)  # history before we looked: not counted
    folder.observe_handled({"a": 530, "b": 10}, 105.0)
    folder.add(sample("main"), 106.0)
    (first,) = folder.observe_handled({"a": 560, "b": 12}, 111.0)
    assert first.handled == {"a": 30}
    assert first.handled_total == 30
    (second,) = folder.tick(120.0)
    assert second.handled == {"a": 30, "b": 2}
    assert second.samples == 0, "an idle actor that handled messages still gets a window"


def test_a_window_without_samples_or_messages_is_not_emitted():
    folder = WindowFolder(LABELS, now=0.0, length=10.0)
    assert folder.tick(35.0) == []
    folder.add(sample("main"), 36.0)
    (window,) = folder.tick(40.0)
    assert (window.start, window.end) == (30.0, 40.0)


def test_flush_closes_the_partial_window_at_now():
    folder = WindowFolder(LABELS, now=0.0, length=10.0)
    folder.add(sample("main"), 1.0)
    folder.add(sample("main"), 2.0)
    (partial,) = folder.flush(3.5)
    assert (partial.start, partial.end, partial.samples) == (0.0, 3.5, 2)
    assert folder.flush(4.0) == []
    folder.add(sample("main"), 9.0)
    (ended,) = folder.flush(12.0)  # the window that ended meanwhile; the empty partial one is dropped
    assert (ended.start, ended.end, ended.samples) == (4.0, 10.0, 1)
    folder.observe_handled({"a": 1}, 12.5)
    folder.observe_handled({"a": 4}, 13.0)
    (partial,) = folder.flush(14.0)
    assert (partial.start, partial.end, partial.samples, partial.handled) == (12.0, 14.0, 0, {"a": 3})


def test_relabel_applies_to_the_window_in_progress():
    folder = WindowFolder(WindowLabels("h", "pid-7", 7), now=0.0, length=10.0)
    folder.add(sample("main"), 1.0)
    folder.relabel(LABELS)
    (window,) = folder.tick(10.0)
    assert window.labels == LABELS


def test_window_length_must_be_positive():
    with pytest.raises(ValueError, match="window length must be positive"):
        WindowFolder(LABELS, now=0.0, length=0.0)


def test_merge_adds_counts_spans_the_windows_and_keeps_the_latest_labels():
    later = WindowLabels("h", "g", 8, ("a",), "1.1")
    a = ProfileWindow(LABELS, 0.0, 60.0, 2, 20, {"m;f": 2}, {"a": 5})
    b = ProfileWindow(later, 60.0, 120.0, 3, 30, {"m;f": 1, "m;g": 2}, {"a": 1, "b": 4})
    merged = merge_windows([b, a])
    assert (merged.start, merged.end, merged.samples, merged.cpu_us) == (0.0, 120.0, 5, 50)
    assert merged.stacks == {"m;f": 3, "m;g": 2}
    assert merged.handled == {"a": 6, "b": 4}
    assert merged.labels == later
    with pytest.raises(ValueError, match="at least one window"):
        merge_windows([])


stacks = st.dictionaries(
    st.lists(st.sampled_from(["m", "f", "g", "h"]), min_size=1, max_size=5).map(";".join),
    st.integers(1, 1000),
    max_size=20,
)


@given(stacks)
def test_shares_are_consistent_for_any_stacks(stack_counts):
    window = ProfileWindow(LABELS, 0.0, 1.0, sum(stack_counts.values()), 0, stack_counts)
    shares = window.function_shares()
    if not stack_counts:
        assert shares == []
        return
    assert sum(s.self_share for s in shares) == pytest.approx(1.0)
    for share in shares:
        assert 0 <= share.self_share <= share.inclusive_share <= 1.0
    assert ProfileWindow.from_dict(window.to_dict()) == window
