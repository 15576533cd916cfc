"""Target discovery from the $actors announcements and the restart backoff: pure logic."""

from __future__ import annotations

import pytest

from observability.profiling import WindowLabels
from observability.profiling._targets import TargetTable, backoff_delay


def hello(pid: int, *, group: str = "busy", host: str = "here", **extra):
    return {"group": group, "pid": pid, "host": host, "actors": ["busy"], "version": "1.0", **extra}


def stats(pid: int, handled: int, group: str = "busy"):
    return {"group": group, "pid": pid, "hub": {}, "actors": {"busy": {"handled": handled, "failures": 0}}}


def test_a_hello_from_this_host_makes_a_target_labelled_from_the_announcement():
    table = TargetTable("here", window=10.0)
    found = table.hello(hello(11), now=0.0)
    assert found is not None
    assert found.previous_pid is None
    assert found.target.labels == WindowLabels("here", "busy", 11, ("busy",), "1.0")
    assert table.hello(hello(11), now=5.0) is None, "the periodic hello of a known pid changes nothing"
    assert len(table) == 1


def test_hellos_from_other_hosts_and_malformed_ones_are_ignored():
    table = TargetTable("here")
    assert table.hello(hello(11, host="elsewhere"), now=0.0) is None
    for bad in (None, [], {"group": "g"}, {**hello(11), "pid": "11"}, {"group": 1, "pid": 2, "host": "here"}):
        assert table.hello(bad, now=0.0) is None
    assert len(table) == 0


def test_a_restarted_group_is_a_new_pid_and_reports_the_previous_one():
    table = TargetTable("here")
    table.hello(hello(11), now=0.0)
    assert table.remove(11, now=1.0) == []
    found = table.hello(hello(12), now=2.0)
    assert found is not None
    assert (found.target.pid, found.previous_pid) == (12, 11)


def test_two_processes_of_one_group_are_both_targets():
    table = TargetTable("here")
    table.hello(hello(11, group="actors"), now=0.0)
    table.hello(hello(12, group="actors"), now=0.0)
    assert sorted(t.pid for t in table) == [11, 12]


def test_a_pid_added_by_hand_takes_the_labels_of_its_announcement():
    table = TargetTable("here", window=10.0)
    target = table.add_pid(11, now=0.0)
    assert target.labels.group == "pid-11"
    assert target.manual
    assert table.hello(hello(11), now=1.0) is None
    assert target.labels.group == "busy"
    assert target.folder.labels.group == "busy"


def test_a_pid_added_by_hand_takes_one_groups_name_then_belongs_to_it():
    # else any peer could give a --pid target a new group every window, each a history of its own
    table = TargetTable("here", window=10.0)
    target = table.add_pid(11, now=0.0)
    table.hello(hello(11, group="risk"), now=1.0)
    assert table.hello(hello(11, group="other"), now=2.0) is None
    assert target.labels.group == "risk" and not target.manual and table.refused == {"relabel": 1}


def test_stats_naming_too_many_actors_are_refused_and_unprintable_names_skipped():
    table = TargetTable("here", window=10.0)
    table.hello(hello(11), now=0.0)
    many = {f"a{i}": {"handled": 1} for i in range(1_001)}
    table.stats({"pid": 11, "actors": many}, now=1.0)
    assert table.refused == {"stats": 1}
    odd = {
        "busy": {"handled": 5},
        "x\x1b[2J": {"handled": 9},
        "y" * 201: {"handled": 9},
        "z": {"handled": True},
    }
    table.stats({"pid": 11, "actors": odd}, now=2.0)
    table.stats(stats(11, 65), now=9.0)
    (window,) = table.tick(10.0)
    assert window.handled == {"busy": 60}


def test_stats_feed_the_handled_counters_of_the_right_target():
    table = TargetTable("here", window=10.0)
    table.hello(hello(11), now=0.0)
    table.stats(stats(11, 100), now=1.0)
    table.stats(stats(99, 5000), now=1.0)  # not ours
    table.stats({"pid": [1]}, now=1.0)  # malformed
    table.stats(stats(11, 160), now=9.0)
    (window,) = table.tick(10.0)
    assert window.handled == {"busy": 60}


def test_bye_marks_the_target_and_remove_flushes_its_partial_window():
    table = TargetTable("here", window=10.0)
    table.hello(hello(11), now=0.0)
    table.stats(stats(11, 0), now=1.0)
    table.stats(stats(11, 7), now=2.0)
    target = table.bye({"group": "busy", "pid": 11})
    assert target is not None
    assert target.said_bye
    assert table.bye({"pid": 99}) is None
    (last,) = table.remove(11, now=3.0)
    assert (last.end, last.handled) == (3.0, {"busy": 7})
    assert table.get(11) is None


@pytest.mark.parametrize(
    ("failures", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0)]
)
def test_backoff_doubles_from_one_second_up_to_a_minute(failures, delay):
    assert backoff_delay(failures) == delay


@pytest.mark.parametrize(
    "bad",
    [
        {"group": "g\nforged log line"},
        {"group": "\x1b]8;;https://evil.example\x07g"},
        {"group": "g" * 201},
        {"group": ""},
        {"host": "here\x1b[2J"},
        {"version": "1.0\r"},
        {"version": 3},
        {"actors": ["ok", "bad\x00"]},
        {"actors": ["a"] * 1001},
        {"actors": "busy"},
        {"pid": True},
        {"pid": -1},
        {"pid": 2**64},
    ],
)
def test_a_hello_with_unprintable_or_oversized_names_is_refused_and_counted(bad):
    table = TargetTable("here")
    assert table.hello({**hello(11), **bad}, now=0.0) is None
    assert len(table) == 0 and table.refused == {"labels": 1}


def test_the_table_holds_at_most_max_targets_and_asks_accept_about_each_new_pid():
    asked: list[int] = []

    def accept(pid: int) -> str | None:
        asked.append(pid)
        return None if pid % 2 else "runs as another user"

    table = TargetTable("here", max_targets=3, accept=accept)
    found = [table.hello(hello(pid, group=f"g{pid}"), now=0.0) for pid in range(1, 12)]
    assert sorted(t.pid for t in table) == [1, 3, 5]
    assert [f.target.pid for f in found if f is not None] == [1, 3, 5]
    assert table.refused == {"process": 2, "full": 6}
    assert asked == [1, 2, 3, 4, 5]  # not asked once full
    assert table.last_refusal == "already 3 targets (max_targets)"


def test_a_hello_may_not_relabel_another_groups_process():
    table = TargetTable("here")
    table.hello(hello(11, group="risk"), now=0.0)
    assert table.hello(hello(11, group="impostor"), now=1.0) is None
    assert table.get(11).labels.group == "risk" and table.refused == {"relabel": 1}
    table.hello(hello(11, group="risk", version="2.0"), now=2.0)  # its own group: a new version is fine
    assert table.get(11).labels.version == "2.0"
