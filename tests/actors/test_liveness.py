"""Heartbeat schedule, heartbeat parsing, publisher liveness, lag flags and tail-loss accounting."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loguru import logger

from actors._liveness import (
    _HOST,
    DEFAULT_MAX_INTERVAL,
    HeartbeatSchedule,
    HubWatch,
    LagMonitor,
    PublisherLiveness,
    is_farewell,
    parse_heartbeat,
)
from actors._sequence import SequenceTracker
from broker import FORMAT_VERSION, Header, encode_header, encode_key, encode_message
from observability import RateLimitedLog


def test_busy_heartbeats_are_empty_and_the_first_idle_one_reports_changes_three_times():
    schedule = HeartbeatSchedule(1.0)
    assert not schedule.due(0.0, 0)  # nothing published yet: nothing to say
    assert schedule.due(0.0, 5)
    assert schedule.next_payload(0.0, 5, [(b"a\x00", 5)]) == {"i": 1.0, "k": []}  # busy
    assert not schedule.due(0.5, 5)
    payloads = [schedule.next_payload(float(t), 5, [(b"a\x00", 5)]) for t in range(1, 6)]
    assert [p["k"] for p in payloads] == [[[b"a\x00", 5]]] * 3 + [[], [[b"a\x00", 5]]]  # then 4 intervals on
    schedule.next_payload(6.0, 6, [(b"a\x00", 6)])  # busy again
    assert schedule.next_payload(7.0, 6, [(b"a\x00", 6), (b"b\x00", 1)])["k"] == [
        [b"a\x00", 6],
        [b"b\x00", 1],
    ]


def test_an_idle_publisher_keeps_reporting_every_key_so_a_tail_behind_a_full_queue_is_counted():
    schedule = HeartbeatSchedule(1.0)
    schedule.next_payload(0.0, 10, [(b"a\x00", 10)])  # busy with a
    schedule.next_payload(1.0, 10, [(b"a\x00", 10)])  # idle: reports a
    schedule.next_payload(2.0, 11, [(b"a\x00", 10), (b"b\x00", 1)])  # busy with b
    reports = [
        schedule.next_payload(float(t), 11, [(b"a\x00", 10), (b"b\x00", 1)])["k"] for t in range(3, 103)
    ]
    assert reports[:3] == [[[b"b\x00", 1]]] * 3  # what just moved, three in a row
    full = [[b"a\x00", 10], [b"b\x00", 1]]
    spaced = [beat for beat, report in enumerate(reports) if report]
    assert spaced == [0, 1, 2, 4, 8, 16, 32, 48, 64, 80, 96]
    assert all(reports[beat] == full for beat in spaced[3:])  # every key the publisher ever moved


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        {"i": 0, "k": []},
        {"i": 1.0},
        {"i": 1.0, "k": [[b"a", -1]]},
        {"i": 1.0, "k": [["a", 1]]},
        {"i": float("inf"), "k": []},  # never gone: its entry would stay for ever
        {"i": float("nan"), "k": []},
        {"i": DEFAULT_MAX_INTERVAL * 2, "k": []},
        {"i": True, "k": []},
    ],
)
def test_malformed_heartbeats_are_refused(payload: object):
    with pytest.raises(ValueError):
        parse_heartbeat(payload)


def test_publishers_are_gone_after_three_missed_intervals_and_back_when_heard():
    live = PublisherLiveness()
    live.heard("p@h:1:a", 1.0, 0.0)
    assert live.check(2.9) == [] and live.live == 1
    assert live.check(3.1) == [("p@h:1:a", 3.1)] and live.gone == 1
    assert live.check(4.0) == []  # reported once
    assert live.heard("p@h:1:a", 1.0, 5.0) is True and live.live == 1 and live.gone_events == 1


def test_a_publisher_that_says_goodbye_left_at_info_and_one_that_stops_without_notice_is_gone():
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])), level="INFO")
    try:
        watch = HubWatch("sub", "sub@h:1:a", idle_heartbeat=1.0, slow_after=0.0, log=RateLimitedLog(0.0))
        schedule = HeartbeatSchedule(0.001)
        farewell = schedule.farewell([(b"k\x00", 7)])
        assert is_farewell(farewell) and parse_heartbeat(farewell) == (0.001, [(b"k\x00", 7)])
        assert not is_farewell(schedule.next_payload(0.0, 1, []))
        watch.heard("quits@h:2:b", 0.001)
        watch.heard("dies@h:3:c", 0.001)
        watch.heard("quits@h:2:b", 0.001, farewell=True)
        watch.check_liveness(time.monotonic() + 1.0, SequenceTracker())  # a second without heartbeats
    finally:
        logger.remove(sink)
    assert [(level, text.split(": no heartbeat")[0]) for level, text in lines] == [
        ("INFO", "hub sub: publisher quits@h:2:b left"),
        ("WARNING", "hub sub: publisher dies@h:3:c gone"),
    ]
    assert watch.liveness.gone == 1 and watch.liveness.live == 0


def test_lag_flags_slow_once_and_recovers_below_half_the_bound():
    lag = LagMonitor(1.0)
    old = Header(1, "p@elsewhere:1:a", 1, 0, 0, None)
    assert lag.check(old, 0, 2_000_000_000, behind=True) == "slow"
    older = Header(1, "p@elsewhere:1:a", 2, 0, 1_000_000_000, None)
    assert lag.check(older, 0, 2_000_000_000, behind=True) is None
    fresh = Header(1, "p@elsewhere:1:a", 3, 0, 1_900_000_000, None)
    assert lag.check(fresh, 0, 2_000_000_000, behind=True) == "recovered"
    assert (
        lag.check(None, 0, 9_000_000_000, behind=False) is None and lag.lag == 0.0
    )  # nothing processed: idle
    assert lag.episodes == 1 and lag.unconfirmed == 0


def test_an_old_send_time_flags_nothing_unless_the_hub_itself_is_behind():
    # a sender's word alone (its clock behind, or made up) must not flag the hub: a slow hub stops
    # reporting publishers gone (HubWatch.check_liveness)
    lag = LagMonitor(1.0)
    old = Header(1, "p@elsewhere:1:a", 1, 0, 0, None)
    assert lag.check(old, 0, 2_000_000_000, behind=False) is None
    assert not lag.slow and lag.episodes == 0 and lag.unconfirmed == 1
    assert lag.check(old, 0, 2_000_000_000, behind=True) == "slow"
    # still old, but the backlog here is gone: the hub caught up, whatever the stamps say
    assert lag.check(old, 0, 3_000_000_000, behind=False) == "recovered"
    assert lag.episodes == 1 and lag.unconfirmed == 1


def test_a_frame_s_age_is_read_from_its_header_as_a_lag_sample_is():
    # what a skim reads of the frames it discards, undecoded (RemoteHub._skim)
    lag = LagMonitor(1.0)
    kb = encode_key(("k",))
    here = f"p@{_HOST}:1:a"
    frame = encode_message(kb, encode_header(here, 1, 1_000_000_000, 0), b"\x90")
    assert lag.frame_age(frame, 3_500_000_000, 0) == 2.5  # same host: the monotonic clocks
    elsewhere = encode_message(kb, encode_header("p@elsewhere:1:a", 1, 0, 7_000_000_000), b"\x90")
    assert lag.frame_age(elsewhere, 0, 7_250_000_000) == 0.25  # another host: the wall clocks
    assert lag.frame_age(elsewhere, 0, 6_000_000_000) == 0.0  # a little ahead: no age, not negative
    # says nothing: no key end, a cut header, another format version, an implausible send time
    assert lag.frame_age(b"junk", 0, 0) is None
    assert lag.frame_age(frame[: len(kb) + 10], 0, 0) is None
    other = bytearray(frame)
    other[len(kb) + 1] = FORMAT_VERSION + 1
    assert lag.frame_age(bytes(other), 3_500_000_000, 0) is None
    skewed = lag.skew.skewed
    assert lag.frame_age(elsewhere, 0, 7_000_000_000 + 10**15) is None and lag.skew.skewed == skewed + 1


@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(0, 5))
def test_received_plus_gaps_equals_published_when_the_last_seq_comes_by_heartbeat(delivered, tail):
    tracker = SequenceTracker()
    published = len(delivered) + tail
    received = 0
    for seq, arrived in enumerate([True, *delivered], start=1):  # the first always arrives
        if arrived:
            tracker.observe("p@h:1:a", b"k\x00", seq)
            received += 1
    published += 1
    tracker.catch_up("p@h:1:a", b"k\x00", published)
    tracker.catch_up("p@h:1:a", b"k\x00", published)  # repeated reports count once
    assert received + tracker.gaps == published


def test_a_new_id_under_a_known_name_and_host_is_an_incarnation_not_a_sequence_error():
    tracker = SequenceTracker()
    for seq in (1, 2, 3):
        tracker.observe("feed@h:10:a", b"k\x00", seq)
    for seq in (1, 2):
        tracker.observe("feed@h:11:b", b"k\x00", seq)
    assert tracker.incarnations == 1 and tracker.last_incarnation == ("feed@h:10:a", "feed@h:11:b")
    assert tracker.gaps == tracker.duplicates == tracker.reordered == 0


def test_made_up_publishers_stay_within_the_configured_table_and_the_least_recently_heard_goes():
    """Heartbeats under 100,000 made-up ids (half with an infinite interval, never gone): the table
    stays within max_publishers, evictions and refusals counted (it kept every id, the infinite ones
    for ever)."""
    live = PublisherLiveness(max_publishers=100, max_interval=60.0)
    live.heard("real@h:1:a", 1.0, 0.0)
    for n in range(100_000):
        live.heard(f"forged{n}@h:2:{n:x}", 1.0 if n % 2 else float("inf"), 0.0)
        if n % 50 == 0:
            live.heard("real@h:1:a", 1.0, 0.0)  # heard recently: kept
    assert live.refused == 50_000
    assert live.live == 100 and live.evicted == 50_000 + 1 - 100
    assert live.heard("slow@h:3:c", 61.0, 0.0) is False and live.refused == 50_001  # over max_interval
    newly = dict(live.check(3.5))  # three missed intervals later: every entry is gone
    assert len(newly) == 100 and "real@h:1:a" in newly  # the one heard recently was never evicted
    assert live.gone == 100 and live.live == 0
    assert live.check(3.5 + 3601.0) == [] and live.gone == 0  # forgotten an hour after gone


def test_the_hub_watch_passes_its_bounds_to_liveness():
    watch = HubWatch(
        "sub", "sub@h:1:a", idle_heartbeat=1.0, slow_after=0.0, log=RateLimitedLog(0.0), max_publishers=2
    )
    for n in range(3):
        watch.heard(f"p{n}@h:1:{n}", 1.0)
    assert watch.liveness.live == 2 and watch.liveness.evicted == 1


def test_a_backlog_confirms_the_lag_checks_of_the_two_intervals_after_it():
    watch = HubWatch("sub", "sub@h:1:a", idle_heartbeat=1.0, slow_after=0.5, log=RateLimitedLog(0.0))
    old = Header(1, "p@elsewhere:1:a", 1, 0, time.time_ns() - 5 * 10**9, None)
    assert watch.check_lag(None, 0, 10.0) is None
    watch.backlog_at = 10.05  # e.g. the sweep found its timer late, before the waiting message was read
    assert watch.check_lag(None, 0, 10.1) is None  # that sweep's own check: nothing read yet
    event = watch.check_lag(old, 0, 10.2)  # the next one reads the message that waited
    assert event is not None and event["state"] == "slow"
    assert watch.check_lag(old, 0, 10.3)["state"] == "recovered"  # type: ignore[index]  # backlog gone
    assert watch.check_lag(old, 0, 10.4, held=True)["state"] == "slow"  # type: ignore[index]  # a full queue
    assert watch.lag.unconfirmed == 0
    assert watch.check_lag(old, 0, 10.5) is not None and watch.check_lag(old, 0, 10.6) is None
    assert watch.lag.unconfirmed == 1 and watch.lag.episodes == 2
