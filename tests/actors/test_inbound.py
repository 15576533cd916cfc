"""The inbound protocol step: every malformed frame set is counted and dropped, good ones routed."""

from __future__ import annotations

import itertools
import time
import tracemalloc

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import Key, encode_header, encode_key, encode_payload
from actors._inbound import DEFAULT_MAX_KEY, Inbound, MessageCut
from actors._liveness import HEARTBEAT_CONTAINERS, LagMonitor
from actors._redundancy import RedundantTracker
from broker import FIXED, DecodeLimits, SubscriptionIndex, encode_message
from observability import RateLimitedLog


def make_inbound(max_payload: int = 1024) -> tuple[Inbound, list]:
    index: SubscriptionIndex = SubscriptionIndex()
    got: list = []
    index.add(
        Key("t", "*"),
        lambda k, p, h: got.append((k, p, h.seq) if h.trace is None else (k, p, h.seq, h.trace)),
    )
    return Inbound(index, max_payload=max_payload, log=RateLimitedLog(), name="test"), got


GOOD_KEY = encode_key(("t", "x"))


def good(seq: int) -> list[bytes]:
    return [encode_message(GOOD_KEY, encode_header("pub", seq, 1, 2), encode_payload({"n": seq}))]


@pytest.mark.parametrize(
    "frames",
    [
        [b"only-one"],  # no key end
        [GOOD_KEY, b"two"],
        [GOOD_KEY, b"h", b"p", b"four"],
        [GOOD_KEY, msgpack.packb([1, "p", 1, 1, 1, None]), b"\x80"],  # a format-1 message
        [encode_message(b"t\x00x", encode_header("p", 1, 1, 1), b"\x80")],  # key without terminator
        [encode_message(GOOD_KEY, b"\xc1", b"\x80")],  # header cut short
        [encode_message(GOOD_KEY, FIXED.pack(9, 0, 1, 1, 1, 1) + b"p", b"\x80")],  # wrong version
        [encode_message(GOOD_KEY, encode_header("p", 1, 1, 1), b"\xc1")],  # payload not msgpack
        [encode_message(GOOD_KEY, encode_header("p", 1, 1, 1), b"\x00" * 2000)],  # oversize
    ],
)
def test_each_kind_of_malformed_message_is_counted_and_dropped(frames):
    inbound, got = make_inbound()
    inbound.handle_frames(frames)
    stats = inbound.statistics()
    assert got == [] and stats.received == 1 and stats.malformed == 1


def test_messages_nobody_wants_are_not_decoded_but_counted_unmatched():
    inbound, _ = make_inbound()
    inbound.handle_frames([encode_message(encode_key(("u",)), encode_header("p", 1, 1, 1), b"\xc1")])
    assert inbound.statistics().unmatched == 1 and inbound.statistics().malformed == 0


TRACE = ["00-a-b-01", ""]


def test_a_header_with_trace_context_is_delivered_with_it():
    inbound, got = make_inbound()
    inbound.handle_frames([encode_message(GOOD_KEY, encode_header("p", 1, 1, 1, TRACE), encode_payload(1))])
    inbound.handle_frames([encode_message(GOOD_KEY, encode_header("p", 2, 1, 1), encode_payload(2))])
    inbound.handle_frames([encode_message(GOOD_KEY, encode_header("p", 3, 1, 1, TRACE), encode_payload(3))])
    assert got == [(("t", "x"), 1, 1, TRACE), (("t", "x"), 2, 2), (("t", "x"), 3, 3, TRACE)]


def test_read_takes_a_sampled_message_inline_once_its_publisher_is_known():
    # 1 % of a traced stream carries a context: through the checked path each cost ~20 us in a
    # busy process (its code cold), ~6x a message read inline
    inbound, got = make_inbound()
    checked: list[bytes] = []
    handle = inbound.handle
    inbound.handle = lambda frame: (checked.append(frame), handle(frame))  # type: ignore[method-assign]
    frames = [
        encode_message(
            GOOD_KEY, encode_header("p", seq, 1, 1, TRACE if seq % 2 else None), encode_payload(seq)
        )
        for seq in range(1, 7)
    ]
    receive = iter(frames).__next__
    assert inbound.read(receive, StopIteration, 10) == 6
    assert checked == frames[:1]  # the publisher's first message only
    assert got == [(("t", "x"), s, s, TRACE) if s % 2 else (("t", "x"), s, s) for s in range(1, 7)]


@given(st.lists(st.lists(st.binary(max_size=24), min_size=0, max_size=5), max_size=40))
def test_fuzzed_frames_never_raise_and_good_traffic_alongside_all_arrives(junk):
    inbound, got = make_inbound()
    for seq, frames in enumerate(junk, start=1):
        inbound.handle_frames(frames if frames else [b""])
        inbound.handle_frames(good(seq))
    assert [p for _, p, _ in got if isinstance(p, dict)] == [{"n": s} for s in range(1, len(junk) + 1)]
    stats = inbound.statistics()
    assert stats.received == 2 * len(junk)
    assert stats.gaps == 0


def test_a_format_1_message_is_counted_once_naming_both_versions():
    inbound, got = make_inbound()
    v1 = [GOOD_KEY, msgpack.packb([1, "p", 1, 1, 1, None]), encode_payload(1)]
    inbound.rest_of_message = lambda: (v1[1:], True)  # what the hub read of the rest: all of it
    inbound.handle(v1[0])
    assert got == [] and inbound.statistics().malformed == 1 and inbound.malformed_by_reason == {"frames": 1}


def test_a_message_whose_frames_were_not_all_read_is_counted_once_and_stops_the_reader():
    inbound, got = make_inbound()
    inbound.rest_of_message = lambda: ([b""] * 1_000, False)  # the hub read 1,000, more remain
    with pytest.raises(MessageCut):
        inbound.read(iter([b"", *good(1)]).__next__, StopIteration, 10)
    assert got == [] and inbound.statistics().malformed == 1 and inbound.malformed_by_reason == {"frames": 1}
    assert inbound.statistics().received == 1


def _frame(key: tuple[str, ...], publisher: str, seq: int, payload: bytes, trace: bool = False) -> bytes:
    context = ["00-a-b-01", ""] if trace else None
    return encode_message(encode_key(key), encode_header(publisher, seq, 1, 2, context), payload)


def _mangled(frame: bytes, at: int, byte: int) -> bytes:
    """``frame`` with its header's byte ``at`` (0: version, 1: flags, past the fixed part: the
    publisher id and the trace context) replaced: what a broken or hostile sender may send."""
    start = frame.index(b"\xff") + 1 + at
    return frame[:start] + bytes([byte]) + frame[start + 1 :] if start < len(frame) else frame


_PAYLOADS = st.sampled_from(
    [encode_payload({"n": 1}), encode_payload([1, {2: b"x"}]), b"\xc1", b"\x01\x02", b"", b"\x00" * 2000]
)
_FRAMES = st.one_of(
    st.builds(
        _frame,
        st.sampled_from([("t", "x"), ("t", "y"), ("u",)]),
        st.sampled_from(["p", "q"]),
        st.integers(min_value=0, max_value=6),
        _PAYLOADS,
        st.booleans(),
    ),
    st.builds(  # sampled messages whose header is broken anywhere, the flags and the trace included
        _mangled,
        st.builds(_frame, st.just(("t", "x")), st.just("p"), st.integers(1, 6), _PAYLOADS, st.just(True)),
        st.integers(min_value=1, max_value=FIXED.size + 20),
        st.integers(min_value=0, max_value=255),
    ),
    st.binary(max_size=40),
)


@given(st.lists(_FRAMES, max_size=60), st.integers(min_value=1, max_value=7))
def test_read_does_exactly_what_handle_does_frame_by_frame(frames, count):
    # read()'s inline common shape is an optimisation of handle(): the same deliveries, in the
    # same order, and the same counters, whatever the frames (gaps, repeats, junk, unknown keys).
    one, got_one = make_inbound()
    for frame in frames:
        one.handle(frame)
    many, got_many = make_inbound()
    receive = iter(frames).__next__
    while many.read(receive, StopIteration, count) == count:
        pass
    assert got_many == got_one
    assert many.statistics() == one.statistics()
    assert many.malformed_by_reason == one.malformed_by_reason
    assert many.oldest_header == one.oldest_header  # the lag sample


def _counters(inbound: Inbound) -> dict[str, object]:
    tracker = inbound.tracker
    names = ("redundant", "redundant_by_source", "repeated_by_source", "missed_by_source", "held", "holds")
    return {name: getattr(tracker, name) for name in (*names, "hold_overflows", "gaps", "duplicates")}


@st.composite
def _two_brokers(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    """What a hub on two brokers reads: each publisher's messages, numbered per key, carried by
    both brokers, one or none, each broker in order, the two interleaved; junk, traced frames and
    replays mixed in."""
    numbers: dict[tuple[str, tuple[str, ...]], int] = {}
    by_broker: list[list[bytes]] = [[], []]
    for _ in range(draw(st.integers(min_value=0, max_value=40))):
        stream = (draw(st.sampled_from(["p", "q"])), draw(st.sampled_from([("t", "x"), ("t", "y"), ("u",)])))
        numbers[stream] = numbers.get(stream, 0) + draw(st.sampled_from([1, 1, 1, 1, 2, 0]))
        frame = _frame(
            stream[1],
            stream[0],
            numbers[stream],
            draw(_PAYLOADS),
            draw(st.booleans()) and draw(st.booleans()),
        )
        carried = draw(st.sampled_from([(0, 1), (0, 1), (0, 1), (0,), (1,), ()]))
        for broker in carried:
            by_broker[broker].append(frame)
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            by_broker[draw(st.integers(min_value=0, max_value=1))].append(draw(_FRAMES))
    out: list[tuple[int, bytes]] = []
    while by_broker[0] or by_broker[1]:
        broker = (
            draw(st.integers(min_value=0, max_value=1))
            if by_broker[0] and by_broker[1]
            else int(not by_broker[0])
        )
        out.append((broker, by_broker[broker].pop(0)))
    return out


@given(
    st.one_of(
        _two_brokers(), st.lists(st.tuples(st.integers(min_value=0, max_value=1), _FRAMES), max_size=60)
    ),
    st.integers(min_value=1, max_value=7),
    st.integers(min_value=1, max_value=40),
)
def test_read_copies_does_exactly_what_handle_does_with_two_brokers(copies, count, max_held):
    # read_copies() is handle() with the next copy from a broker inline: the same deliveries, in the
    # same order, the same counters (redundant, repeated, holds), whichever broker each frame came by
    def make() -> tuple[Inbound, list]:
        index: SubscriptionIndex = SubscriptionIndex()
        got: list = []
        index.add(Key("t", "*"), lambda k, p, h: got.append((k, p, h.seq, h.publisher)))
        tracker = RedundantTracker(2, reorder_window=60.0, max_held=max_held)
        return Inbound(index, max_payload=1024, log=RateLimitedLog(), name="test", tracker=tracker), got

    one, got_one = make()
    for source, frame in copies:
        one.tracker.source = source
        one.handle(frame)
    many, got_many = make()
    runs = [(source, [f for _, f in run]) for source, run in itertools.groupby(copies, key=lambda c: c[0])]
    for source, frames in runs:
        many.tracker.source = source
        receive = iter(frames).__next__
        while many.read_copies(receive, StopIteration, count) == count:
            pass
    assert got_many == got_one
    assert many.statistics() == one.statistics()
    assert many.malformed_by_reason == one.malformed_by_reason
    assert many.oldest_header == one.oldest_header  # the lag sample
    assert _counters(many) == _counters(one)


def test_read_copies_takes_the_second_copy_inline_and_counts_it_redundant():
    index: SubscriptionIndex = SubscriptionIndex()
    got: list = []
    index.add(Key("t", "*"), lambda k, p, h: got.append(h.seq))
    inbound = Inbound(index, max_payload=1024, log=RateLimitedLog(), name="t", tracker=RedundantTracker(2))
    frames = [_frame(("t", "x"), "p", seq, encode_payload(seq)) for seq in range(1, 6)]
    calls = []
    slow = inbound.handle
    inbound.handle = lambda frame: (calls.append(frame), slow(frame))  # type: ignore[method-assign]
    for source in (0, 1):
        inbound.tracker.source = source
        inbound.read_copies(iter(frames).__next__, StopIteration, 10)
    assert got == [1, 2, 3, 4, 5]
    assert inbound.tracker.redundant == 5
    assert len(calls) == 2  # each broker's first frame of the stream; the other 8 inline


# -- bounds on what a peer's frames make the hub hold (issue 11) -------------------------------------
def test_a_key_over_max_key_is_dropped_before_it_is_cached_or_tracked_and_counted_oversize():
    # 200 distinct 1.9 MB keys under a subscribed prefix grew a hub 39 -> 770 MiB: each stayed in
    # the key cache and in the tracker's stream table, both bounded in entries, not in bytes
    inbound, got = make_inbound()
    long_keys = [b"t\x00" + b"%06d" % n + b"x" * 100_000 + b"\x00" for n in range(50)]
    frames = [encode_message(kb, encode_header("p", 1, 1, 2), encode_payload(1)) for kb in long_keys]
    receive = iter(frames).__next__
    assert inbound.read(receive, StopIteration, 100) == 50  # the inline reader hands misses to handle()
    assert (inbound.oversize, inbound.malformed_by_reason) == (50, {"oversize": 50})
    assert inbound._keys == {} and inbound.tracker.last == {} and got == []
    longest = b"t\x00" + b"y" * (DEFAULT_MAX_KEY - 3) + b"\x00"  # exactly max_key: a key like any other
    inbound.handle(encode_message(longest, encode_header("p", 1, 1, 2), encode_payload(2)))
    inbound.handle_frames(good(1))
    assert [p for _, p, _ in got] == [2, {"n": 1}] and inbound.statistics().streams == 2


def test_a_cached_key_is_never_checked_again():
    # the bound costs the hot path nothing: read() looks a cached key up and goes on
    index: SubscriptionIndex = SubscriptionIndex()
    got: list = []
    index.add(Key("t", "*"), lambda k, p, h: got.append(h.seq))
    inbound = Inbound(index, max_payload=1024, log=RateLimitedLog(), name="t", max_key=300)
    frames = [_frame(("t", "x"), "p", seq, encode_payload(seq)) for seq in range(1, 4)]
    inbound.handle(frames[0])
    inbound._max_key = 0  # would drop every key, were it looked at again
    checked: list[bytes] = []
    handle = inbound.handle
    inbound.handle = lambda frame: (checked.append(frame), handle(frame))  # type: ignore[method-assign]
    inbound.read(iter(frames[1:]).__next__, StopIteration, 10)
    assert got == [1, 2, 3] and checked == [] and inbound.oversize == 0


def _heartbeat(body: object, publisher: str = "feed@h:1:a") -> bytes:
    return encode_message(
        encode_key(("$bus", "hb", "feed")), encode_header(publisher, 1, 1, 2), msgpack.packb(body)
    )


def test_a_heartbeat_over_max_payload_is_dropped_undecoded_and_counted_oversize():
    # 1.9 MB of empty maps: +135 MiB when decoded with a bare unpackb, counted malformed only
    inbound, _ = make_inbound(max_payload=1024 * 1024)
    heard: list = []
    inbound.on_heartbeat = lambda *beat: heard.append(beat)
    bomb = _heartbeat({"i": 1, "k": [{}] * 1_900_000})
    tracemalloc.start()
    try:
        inbound.handle(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(bomb)  # a copy or two of its bytes, never an object per byte
    assert (inbound.oversize, inbound.malformed_by_reason, inbound.heartbeats) == (1, {"oversize": 1}, 0)
    inbound.handle(_heartbeat({"i": 1, "k": [[GOOD_KEY, 3]]}))
    assert heard == [("feed@h:1:a", 1.0, False)] and inbound.heartbeats == 1


def test_a_heartbeat_is_decoded_under_the_same_limits_as_data():
    index: SubscriptionIndex = SubscriptionIndex()
    limits = DecodeLimits(max_bytes=1024 * 1024, max_containers=1000, counted_above=1024)
    inbound = Inbound(index, max_payload=1024 * 1024, log=RateLimitedLog(), name="t", limits=limits)
    heard: list = []
    inbound.on_heartbeat = lambda *beat: heard.append(beat)
    inbound.handle(_heartbeat({"i": 1, "k": [[GOOD_KEY, n] for n in range(2000)]}))  # 2,001 containers
    assert heard == [] and inbound.malformed_by_reason == {"heartbeat": 1} and inbound.heartbeats == 0
    inbound.handle(_heartbeat({"i": 1, "k": [[GOOD_KEY, n] for n in range(900)]}))
    assert len(heard) == 1 and inbound.heartbeats == 1


def test_a_heartbeat_holds_no_more_entries_than_the_largest_a_hub_sends():
    # the data path's 100,000 containers let 1 MiB of entries cost every subscribed hub ~60-90 ms to
    # decode; a hub's largest idle report is 20,000 keys (its map, its list and an entry each)
    inbound, _ = make_inbound(max_payload=1024 * 1024)
    heard: list = []
    inbound.on_heartbeat = lambda *beat: heard.append(beat)
    entries = [[GOOD_KEY, n] for n in range(HEARTBEAT_CONTAINERS - 1)]  # one entry too many
    inbound.handle(_heartbeat({"i": 1, "k": entries}))
    assert heard == [] and inbound.malformed_by_reason == {"heartbeat": 1}
    inbound.handle(_heartbeat({"i": 1, "k": entries[:-1]}))  # the largest a hub sends
    assert len(heard) == 1 and inbound.heartbeats == 1


# -- the lag sample: only from messages delivered ---------------------------------------------------
SEC = 1_000_000_000


def _aged(key: tuple[str, ...], publisher: str, seq: int, age_s: int) -> bytes:
    wall = time.time_ns() - age_s * SEC
    return encode_message(encode_key(key), encode_header(publisher, seq, 0, wall), encode_payload(seq))


def test_the_lag_sample_comes_only_from_messages_delivered_new_to_their_stream():
    # a frame nobody here wants, a duplicate or a replay costs a peer nothing to stamp 600 s old:
    # sampled, it flagged the hub slow ($bus.slow published, quiet publishers no longer reported)
    inbound, got = make_inbound()
    lag = LagMonitor(1.0)
    inbound.handle(_aged(("t", "x"), "p@elsewhere:1:a", 1, 0))
    inbound.handle(_aged(("t", "x"), "p@elsewhere:1:a", 2, 0))
    assert inbound.oldest_header is not None and inbound.oldest_header.seq == 1
    assert lag.check(inbound.oldest_header, 0, time.time_ns(), behind=True) is None
    inbound.oldest_header = None  # taken by the hub's lag check
    for frame in (
        _aged(("u",), "rogue@elsewhere:1:a", 1, 600),  # unmatched
        _aged(("t", "x"), "p@elsewhere:1:a", 1, 600),  # a duplicate (delivered, as duplicates are)
        _aged(("t", "x"), "p@elsewhere:1:a", 2, 600),
        _aged(("t", "x"), "p@elsewhere:1:a", 9, 600)[:-1] + b"\xc1",  # ahead, but its payload is junk
    ):
        inbound.handle(frame)
    assert inbound.statistics().duplicates == 2 and inbound.unmatched == 1 and len(got) == 4
    assert inbound.oldest_header is None
    assert lag.check(inbound.oldest_header, 0, time.time_ns(), behind=True) is None and not lag.slow
    inbound.read(iter([_aged(("t", "x"), "p@elsewhere:1:a", 10, 0)]).__next__, StopIteration, 5)
    assert inbound.oldest_header is not None and inbound.oldest_header.seq == 10
