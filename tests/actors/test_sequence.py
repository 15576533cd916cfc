"""Gap, duplicate and reordering accounting, without sockets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors import Observation, SequenceTracker


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
