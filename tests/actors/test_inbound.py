"""The inbound protocol step: every malformed frame set is counted and dropped, good ones routed."""

from __future__ import annotations

import itertools

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import Key, encode_header, encode_key, encode_payload
from actors._inbound import Inbound
from actors._redundancy import RedundantTracker
from broker import FIXED, SubscriptionIndex, encode_message
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
    inbound.rest_of_message = lambda: v1[1:]  # what the hub reads of the rest of the message
    inbound.handle(v1[0])
    assert got == [] and inbound.statistics().malformed == 1 and inbound.malformed_by_reason == {"frames": 1}


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
