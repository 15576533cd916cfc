"""Gap, duplicate and reordering accounting, without sockets."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from actors import Observation, SequenceTracker, _sequence


def test_in_order_stream_counts_nothing():
    tracker = SequenceTracker()
    assert tracker.observe("p", b"k", 1) is Observation.FIRST
    assert [tracker.observe("p", b"k", s) for s in range(2, 6)] == [Observation.IN_ORDER] * 4
    assert (tracker.gaps, tracker.duplicates, tracker.reordered) == (0, 0, 0)


def test_subscriber_counts_gap_when_publisher_sequence_skips():
    tracker = SequenceTracker()
    tracker.observe("p", b"k", 1)
    assert tracker.observe("p", b"k", 5) is Observation.GAP
    assert tracker.gaps == 3 and tracker.last_gap == 3
    (stats,) = tracker.publishers()
    assert stats.gaps == 3


def test_late_arrival_of_a_skipped_number_is_reordering_not_a_gap():
    tracker = SequenceTracker()
    tracker.observe("p", b"k", 1)
    tracker.observe("p", b"k", 3)
    assert tracker.observe("p", b"k", 2) is Observation.REORDERED
    assert (tracker.gaps, tracker.reordered, tracker.duplicates) == (0, 1, 0)
    assert tracker.observe("p", b"k", 2) is Observation.DUPLICATE
    assert tracker.duplicates == 1


def test_streams_are_per_publisher_and_key_so_filtering_is_not_a_gap():
    tracker = SequenceTracker()
    tracker.observe("p", b"a", 1)
    tracker.observe("p", b"b", 1)
    tracker.observe("q", b"a", 1)
    tracker.observe("p", b"a", 2)
    assert tracker.gaps == 0 and tracker.streams() == 3


def test_a_restarted_publisher_is_a_new_stream_not_a_sequence_error():
    tracker = SequenceTracker()
    for seq in range(1, 100):
        tracker.observe("feed@h:1:aaaa", b"k", seq)
    assert tracker.observe("feed@h:1:bbbb", b"k", 1) is Observation.FIRST
    assert (tracker.gaps, tracker.duplicates) == (0, 0)


def test_joining_mid_stream_is_not_a_gap():
    tracker = SequenceTracker()
    assert tracker.observe("p", b"k", 1000) is Observation.FIRST
    assert tracker.gaps == 0


@given(st.lists(st.integers(1, 200), min_size=1, max_size=300))
def test_gaps_equal_the_numbers_never_received_up_to_the_highest(arrivals):
    tracker = SequenceTracker(max_missing=10_000)
    for seq in arrivals:
        tracker.observe("p", b"k", seq)
    first, highest = arrivals[0], max(arrivals)
    received = set(arrivals)
    expected_gaps = len([s for s in range(first, highest + 1) if s not in received])
    assert tracker.gaps == expected_gaps
    assert tracker.gaps + tracker.reordered + tracker.duplicates >= 0


def test_unsubscribing_forgets_streams_so_resubscribing_is_not_a_gap():
    tracker = SequenceTracker()
    tracker.observe("p", b"a\x00x\x00", 1)
    tracker.observe("p", b"a\x00y\x00", 1)
    tracker.observe("p", b"b\x00x\x00", 1)
    assert tracker.forget_prefix(b"a\x00", still_wanted=(b"a\x00y\x00",)) == 1
    assert tracker.observe("p", b"a\x00x\x00", 50) is Observation.FIRST
    assert tracker.observe("p", b"a\x00y\x00", 3) is Observation.GAP
    assert tracker.gaps == 1


FORGED = 1_000_000  # far above any genuine number: beyond max_missing


def test_a_forged_jump_is_taken_back_when_the_genuine_stream_goes_on():
    tracker = SequenceTracker()
    for seq in range(1, 11):
        tracker.observe("p@h:1:a", b"k", seq)
    assert tracker.observe("p@h:1:a", b"k", 10 + FORGED) is Observation.GAP  # forged under p's id
    assert tracker.gaps == FORGED - 1
    assert tracker.observe("p@h:1:a", b"k", 11) is Observation.ROLLED_BACK  # the real publisher goes on
    assert [tracker.observe("p@h:1:a", b"k", s) for s in range(12, 20)] == [Observation.IN_ORDER] * 8
    assert (tracker.gaps, tracker.duplicates, tracker.implausible) == (0, 0, 1)
    assert tracker.missing() == 0


def test_a_second_forged_jump_below_the_first_is_taken_back_too():
    tracker = SequenceTracker()
    for seq in range(1, 11):
        tracker.observe("p@h:1:a", b"k", seq)
    assert tracker.observe("p@h:1:a", b"k", 10 * FORGED) is Observation.GAP
    assert tracker.observe("p@h:1:a", b"k", 5 * FORGED) is Observation.ROLLED_BACK  # below the first
    assert tracker.observe("p@h:1:a", b"k", 11) is Observation.ROLLED_BACK  # the real publisher goes on
    assert [tracker.observe("p@h:1:a", b"k", s) for s in range(12, 20)] == [Observation.IN_ORDER] * 8
    assert (tracker.gaps, tracker.duplicates, tracker.implausible) == (0, 0, 2)
    assert tracker.missing() == 0


def test_a_forged_heartbeat_report_is_taken_back_by_the_genuine_one():
    tracker = SequenceTracker()
    for seq in range(1, 6):
        tracker.observe("p@h:1:a", b"k", seq)
    assert tracker.catch_up("p@h:1:a", b"k", FORGED) == FORGED - 5
    assert tracker.catch_up("p@h:1:a", b"k", 7) == 2  # the genuine report: 6 and 7 never came
    assert (tracker.gaps, tracker.implausible) == (2, 1)
    assert tracker.observe("p@h:1:a", b"k", 8) is Observation.IN_ORDER


@given(
    st.lists(st.booleans(), min_size=1, max_size=300),
    st.lists(st.integers(0, 299), max_size=5),
    st.integers(0, 3000),
    st.booleans(),
)
def test_a_real_loss_of_any_length_is_counted_exactly_despite_forged_numbers(
    arrived, forged_at, long_loss, descending
):
    """received + gaps = published for the genuine stream; no genuine message is ever a duplicate,
    whether each forged number is above the one before or (``descending``) below it."""
    tracker = SequenceTracker(max_missing=64)
    publisher, key = "p@h:1:a", b"k"
    plan = [True, *arrived[: len(arrived) // 2], *([False] * long_loss), *arrived[len(arrived) // 2 :]]
    received = 0
    forged_positions = set(forged_at)
    for i, (seq, gets_through) in enumerate(enumerate(plan, start=1)):
        if gets_through:
            seen = tracker.observe(publisher, key, seq)
            assert seen is not Observation.DUPLICATE, f"genuine seq {seq} dropped as a duplicate"
            received += 1
        if i in forged_positions:
            tracker.observe(publisher, key, seq + (FORGED * (400 - i) if descending else FORGED + i))
    published = len(plan)
    tracker.catch_up(publisher, key, published)  # the genuine publisher's heartbeat reports its tail
    assert received + tracker.gaps == published


def test_made_up_publishers_with_jumps_stay_within_the_configured_bounds():
    tracker = SequenceTracker(max_streams=1_000, max_missing_total=10_000, max_publishers=500)
    for n in range(5_000):
        publisher = f"forged{n}@h:1:{n:x}"
        tracker.observe(publisher, b"k", 1)
        tracker.observe(publisher, b"k", 1 + FORGED)
    assert tracker.streams() <= 1_000
    assert tracker.missing() <= 10_000
    assert len(tracker.publishers()) <= 500
    assert tracker.evicted > 0 and tracker.missing_dropped > 0
    # a genuine stream still counts exactly afterwards
    tracker.observe("real@h:2:b", b"k", 1)
    tracker.observe("real@h:2:b", b"k", 4)
    assert tracker.publishers()[-1].gaps == 2


class _CountingStreams(dict[tuple[str, bytes], int]):
    """The stream table, counting the entries any scan of it visits."""

    visited = 0

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for stream in super().__iter__():
            self.visited += 1
            yield stream


def test_evicting_publishers_costs_only_the_streams_it_removes():
    """A made-up publisher id with the publisher table full evicts the oldest tenth of the
    publishers: its cost is their streams, never a scan of every stream (was 1.8 s at the defaults)."""
    tracker = SequenceTracker(max_publishers=100, max_streams=100_000)
    tracker.last = streams = _CountingStreams()
    for p in range(100):
        for k in range(50):
            tracker.observe(f"pub{p}@h:1:{p:x}", b"k%d" % k, 1)
    streams.visited = 0
    assert tracker.observe("madeup@x:1:ff", b"k", 1) is Observation.FIRST
    assert tracker.evicted == 10 * 50  # the oldest tenth of the publishers, 50 streams each
    assert streams.visited <= tracker.evicted  # was 10 scans of all 5,000 streams
    assert tracker.streams() == 90 * 50 + 1
    # the index stays exact as streams come and go by other paths
    assert tracker.forget_prefix(b"k1") == 90 * 11  # k1, k10..k19 of every remaining publisher
    assert tracker.forget("pub50@h:1:32") == 50 - 11
    assert tracker.forget("pub50@h:1:32") == 0
    assert tracker.observe("pub51@h:1:33", b"k2", 2) is Observation.IN_ORDER


def test_name_and_host_identities_stay_within_max_publishers_across_idle_bursts(monkeypatch):
    """Bursts of made-up ids, each going idle before the next: the identities kept to tell a restart
    stay within max_publishers (they grew by 0.9 x max_publishers per burst)."""
    clock = [1000.0]
    monkeypatch.setattr(_sequence, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    tracker = SequenceTracker(max_publishers=100)
    for burst in range(10):
        for n in range(100):
            tracker.observe(f"b{burst}n{n}@host{n}-{burst}:1:a", b"k", 1)
        assert len(tracker._identities) <= 100
        clock[0] += 301.0  # idle longer than the 300 s after which a publisher is forgotten
    # the most recent identities are still known: a restart among them is an incarnation
    tracker.observe("b9n99@host99-9:2:b", b"k", 1)
    assert tracker.last_incarnation == ("b9n99@host99-9:1:a", "b9n99@host99-9:2:b")
