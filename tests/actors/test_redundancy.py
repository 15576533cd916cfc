"""RedundantTracker: each message once, in order, across several brokers (pure logic, no sockets)."""

from __future__ import annotations

import random

import pytest

from actors import Observation, RedundantTracker

P, K = "pub@host:1:aa", b"md\x00x"


def observe(tracker: RedundantTracker, source: int, seq: int) -> Observation:
    tracker.source = source
    seen = tracker.observe(P, K, seq)
    if seen is Observation.HELD:
        tracker.attach(b"frame-%d-%d" % (source, seq))
    return seen


def release(tracker: RedundantTracker, now: float) -> list[int]:
    """Re-observe what take_ready gives back, as the hub does; the numbers delivered, in order."""
    delivered = []
    for source, frame in tracker.take_ready(now):
        tracker.source, tracker.releasing = source, True
        seq = int(frame.split(b"-")[2])
        try:
            seen = tracker.observe(P, K, seq)
        finally:
            tracker.releasing = False
        if seen in (Observation.IN_ORDER, Observation.GAP, Observation.REORDERED, Observation.FIRST):
            delivered.append(seq)
    return delivered


def test_both_up_first_copy_delivered_second_redundant() -> None:
    tracker = RedundantTracker(2)
    delivered = []
    for seq in range(1, 1001):
        for source in (0, 1) if seq % 3 else (1, 0):  # the brokers take turns being first
            seen = observe(tracker, source, seq)
            if seen in (Observation.FIRST, Observation.IN_ORDER):
                delivered.append(seq)
            else:
                assert seen is Observation.REDUNDANT
    assert delivered == list(range(1, 1001))
    assert tracker.redundant == 1000 - 1 + 1  # every second copy, the first message's included
    assert (tracker.gaps, tracker.duplicates, tracker.held) == (0, 0, 0)
    assert sum(tracker.redundant_by_source) == 1000


def test_a_repeat_from_one_broker_is_a_duplicate_not_redundant() -> None:
    tracker = RedundantTracker(2)
    for seq in (1, 2, 3):
        observe(tracker, 0, seq)
    assert observe(tracker, 0, 2) is Observation.REPEATED  # broker 0 cannot send 2 twice: a replay
    assert observe(tracker, 1, 2) is Observation.REDUNDANT  # broker 1's first copy of 2
    assert observe(tracker, 1, 2) is Observation.REPEATED
    assert (tracker.duplicates, tracker.redundant) == (2, 1)
    assert tracker.repeated_by_source == [1, 1]


def test_a_hole_in_one_broker_is_filled_by_the_other_in_order() -> None:
    tracker = RedundantTracker(2, reorder_window=10.0)
    for seq in (1, 2):
        observe(tracker, 0, seq)
        observe(tracker, 1, seq)
    # broker 0 lost 3: 4 and 5 wait for broker 1, which has not passed 3 yet
    assert observe(tracker, 0, 4) is Observation.HELD
    assert observe(tracker, 0, 5) is Observation.HELD
    assert release(tracker, now=0.0) == []  # nothing's turn yet
    assert observe(tracker, 1, 3) is Observation.IN_ORDER
    assert release(tracker, now=0.0) == [4, 5]
    assert observe(tracker, 1, 4) is Observation.REDUNDANT
    assert observe(tracker, 1, 5) is Observation.REDUNDANT
    assert (tracker.gaps, tracker.reordered, tracker.held) == (0, 0, 0)
    assert tracker.missed_by_source == [1, 0]


def test_a_message_both_brokers_lost_is_a_gap_once_both_passed_it() -> None:
    tracker = RedundantTracker(2, reorder_window=10.0)
    for source in (0, 1):
        observe(tracker, source, 1)
    assert observe(tracker, 0, 3) is Observation.HELD  # broker 1 may still bring 2
    # broker 1 lost 2 as well: its 3 waits behind the stream's hold (order), and now that both
    # brokers have passed 2, one 3 goes on after the gap and the other is the redundant copy
    assert observe(tracker, 1, 3) is Observation.HELD
    assert release(tracker, now=0.0) == [3]
    assert tracker.redundant == 2
    assert tracker.gaps == 1
    assert tracker.held == 0


def test_the_window_bounds_the_wait() -> None:
    tracker = RedundantTracker(2, reorder_window=0.005)
    for source in (0, 1):
        observe(tracker, source, 1)
    assert observe(tracker, 0, 3) is Observation.HELD
    deadline = tracker.next_deadline()
    assert deadline is not None
    assert release(tracker, now=deadline - 0.001) == []
    assert release(tracker, now=deadline) == [3]
    assert tracker.gaps == 1
    # the late copy of 2 from broker 1, after the window: delivered late, the gap taken back
    assert observe(tracker, 1, 2) is Observation.REORDERED
    assert (tracker.gaps, tracker.reordered) == (0, 1)


def test_no_hold_for_a_broker_that_is_down() -> None:
    tracker = RedundantTracker(2, reorder_window=10.0)
    for source in (0, 1):
        observe(tracker, source, 1)
    tracker.up = [True, False]
    assert observe(tracker, 0, 3) is Observation.GAP
    assert tracker.gaps == 1


def test_holds_are_bounded_by_configuration() -> None:
    tracker = RedundantTracker(2, reorder_window=10.0, max_held=3)
    for source in (0, 1):
        observe(tracker, source, 1)
    seen = [observe(tracker, 0, seq) for seq in range(3, 6)]
    assert seen == [Observation.HELD] * 3
    assert tracker.held == 3
    # full: every window ends now; a frame of a stream with holds waits behind them (order), the
    # hub releases them right after the read
    assert observe(tracker, 0, 6) is Observation.HELD
    assert tracker.hold_overflows == 1
    assert release(tracker, now=0.0) == [3, 4, 5, 6]
    assert (tracker.held, tracker.gaps) == (0, 1)
    # another stream, with no holds, is not held when full
    tracker2 = RedundantTracker(2, reorder_window=10.0, max_held=1)
    for source in (0, 1):
        observe(tracker2, source, 1)
    assert observe(tracker2, 0, 3) is Observation.HELD
    tracker2.source = 0
    tracker2.observe(P, b"other", 1)
    assert tracker2.observe(P, b"other", 3) is Observation.GAP


def test_heartbeat_tail_loss_counts_only_once_every_broker_passed() -> None:
    tracker = RedundantTracker(2)
    for seq in (1, 2):
        for source in (0, 1):
            observe(tracker, source, seq)
    tracker.source = 0
    assert tracker.catch_up(P, K, 4) == 0  # broker 1 may still bring 3 and 4
    tracker.source = 1
    assert tracker.catch_up(P, K, 4) == 2  # it has passed them too: lost
    assert tracker.gaps == 2


def test_forgetting_a_stream_drops_its_holds() -> None:
    tracker = RedundantTracker(2, reorder_window=10.0)
    for source in (0, 1):
        observe(tracker, source, 1)
    observe(tracker, 0, 3)
    assert tracker.held == 1
    tracker.forget(P)
    assert tracker.held == 0
    assert tracker.take_ready(0.0) == []


@pytest.mark.parametrize("seed", range(5))
def test_random_losses_each_message_at_most_once_in_order_and_every_loss_counted(seed: int) -> None:
    """Two brokers each drop 5 % at random and interleave at random: whatever both lost is a gap,
    everything else is delivered exactly once, in order (windows end before anything is lost)."""
    rng = random.Random(seed)
    n = 5000
    copies = {s: [q for q in range(1, n + 1) if rng.random() > 0.05] for s in (0, 1)}
    tracker = RedundantTracker(2, reorder_window=1e9)
    delivered: list[int] = []
    positions = {0: 0, 1: 0}
    while positions[0] < len(copies[0]) or positions[1] < len(copies[1]):
        source = rng.choice([s for s in (0, 1) if positions[s] < len(copies[s])])
        seq = copies[source][positions[source]]
        positions[source] += 1
        seen = observe(tracker, source, seq)
        if seen in (Observation.FIRST, Observation.IN_ORDER, Observation.GAP):
            delivered.append(seq)
        if positions[source] == len(copies[source]):
            tracker.up[source] = False  # that broker's stream is over: nothing more will come from it
        delivered += release(tracker, now=0.0)
    delivered += release(tracker, now=float("inf"))
    both = sorted(set(copies[0]) | set(copies[1]))
    first = both[0]
    assert delivered == [q for q in both]
    lost_after_first = [q for q in range(first, both[-1] + 1) if q not in set(both)]
    assert tracker.gaps == len(lost_after_first)
    assert tracker.duplicates == 0
    assert tracker.held == 0


FORGED = 10 + 10**6  # a made-up number under the real publisher's id, far beyond max_missing
_DELIVERED = (Observation.FIRST, Observation.IN_ORDER, Observation.GAP, Observation.ROLLED_BACK)


def delivered_of(tracker: RedundantTracker, frames: list[tuple[int, int]], now: float = 0.0) -> list[int]:
    """Observe (source, seq) frames in turn, releasing holds after each as the hub does at ``now``."""
    delivered = []
    for source, seq in frames:
        if observe(tracker, source, seq) in _DELIVERED:
            delivered.append(seq)
        delivered += release(tracker, now)
    return delivered


@pytest.mark.parametrize("forged_through", [(0, 1), (1, 0), (0,), (1,)])
def test_a_forged_jump_is_taken_back_as_on_one_broker(forged_through: tuple[int, ...]) -> None:
    """A forged seq + 10**6 through both brokers (or one) released before the genuine stream goes
    on: the genuine messages are still delivered, once each and in order, and the jump is counted.
    (They were all REPEATED or REDUNDANT and dropped for good, ``implausible`` 0.)"""
    tracker = RedundantTracker(2)
    assert delivered_of(tracker, [(s, q) for q in range(1, 11) for s in (0, 1)]) == list(range(1, 11))
    # through one broker it waits for the other's copies of what it skipped: the window ends
    assert delivered_of(tracker, [(s, FORGED) for s in forged_through], now=float("inf")) == [FORGED]
    genuine = delivered_of(tracker, [(s, q) for q in range(11, 31) for s in (0, 1)])
    assert genuine == list(range(11, 31))
    assert tracker.implausible == len(forged_through) == sum(tracker.implausible_by_source)
    assert (tracker.gaps, tracker.duplicates, tracker.held) == (0, 0, 0)
    assert tracker.observe(P, K, 31) is Observation.IN_ORDER  # the stream follows the genuine numbers


def test_a_forged_frame_held_on_one_broker_is_dropped_when_that_broker_goes_on() -> None:
    """Through one broker while the other brings the genuine stream: the forged frame waits for the
    other broker's copies of what it skipped, and is dropped (counted) when its own broker goes on
    from below it; that broker's genuine copies are redundant again, not all dropped as repeated."""
    tracker = RedundantTracker(2, reorder_window=10.0)
    delivered_of(tracker, [(s, q) for q in range(1, 11) for s in (0, 1)])
    assert observe(tracker, 0, FORGED) is Observation.HELD
    genuine = delivered_of(tracker, [(s, q) for q in range(11, 31) for s in (1, 0)])
    assert genuine == list(range(11, 31))
    assert (tracker.held, tracker.implausible, tracker.duplicates) == (0, 1, 1)  # the forged frame
    assert tracker.repeated_by_source == [1, 0]
    assert tracker.redundant_by_source == [20, 10]  # broker 0 second from 11 on: its copies are redundant
    assert release(tracker, now=float("inf")) == []  # the forged frame never comes out


def test_a_forged_heartbeat_report_through_both_brokers_is_taken_back() -> None:
    tracker = RedundantTracker(2)
    delivered_of(tracker, [(s, q) for q in range(1, 6) for s in (0, 1)])
    for source in (0, 1):
        tracker.source = source
        tracker.catch_up(P, K, FORGED)
    assert tracker.gaps == FORGED - 5
    genuine = delivered_of(tracker, [(s, q) for q in range(6, 16) for s in (0, 1)])
    assert genuine == list(range(6, 16))
    assert (tracker.gaps, tracker.duplicates, tracker.implausible) == (0, 0, 2)


def test_a_replay_below_a_genuine_jump_is_still_repeated() -> None:
    """A broker that really lost messages and goes on: an old number from it is a replay, dropped."""
    tracker = RedundantTracker(2)
    delivered_of(tracker, [(s, q) for q in range(1, 11) for s in (0, 1)])
    delivered_of(tracker, [(0, 20), (1, 11)])  # broker 0 lost 11..19
    assert observe(tracker, 0, 5) is Observation.REPEATED  # below where its jump started
    assert observe(tracker, 0, 20) is Observation.REPEATED
    assert tracker.implausible == 0


@pytest.mark.parametrize("forged_through", [(0, 1), (1, 0), (0,), (1,)])
def test_a_second_forged_jump_below_the_first_is_taken_back_too(forged_through: tuple[int, ...]) -> None:
    """Two forged numbers, the larger first: the second one refutes the first, and is itself a jump
    that the genuine stream refutes (it used to become the head, and every genuine message after it
    was dropped for good)."""
    tracker = RedundantTracker(2)
    assert delivered_of(tracker, [(s, q) for q in range(1, 11) for s in (0, 1)]) == list(range(1, 11))
    delivered_of(tracker, [(s, 10 * FORGED) for s in forged_through], now=float("inf"))
    delivered_of(tracker, [(s, 5 * FORGED) for s in forged_through], now=float("inf"))
    genuine = delivered_of(tracker, [(s, q) for q in range(11, 31) for s in (0, 1)])
    assert genuine == list(range(11, 31))
    assert (tracker.gaps, tracker.duplicates, tracker.held) == (0, 0, 0)
    assert tracker.implausible >= 2
    assert tracker.observe(P, K, 31) is Observation.IN_ORDER
