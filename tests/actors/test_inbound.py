"""The inbound protocol step: every malformed frame set is counted and dropped, good ones routed."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import Key, encode_header, encode_key, encode_payload
from actors._inbound import Inbound
from broker import FIXED, SubscriptionIndex, encode_message
from observability import RateLimitedLog


def make_inbound(max_payload: int = 1024) -> tuple[Inbound, list]:
    index: SubscriptionIndex = SubscriptionIndex()
    got: list = []
    index.add(Key("t", "*"), lambda k, p, h: got.append((k, p, h.seq)))
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


def test_a_header_with_trace_context_takes_the_checked_path_and_is_delivered():
    inbound, got = make_inbound()
    inbound.handle_frames(
        [encode_message(GOOD_KEY, encode_header("p", 1, 1, 1, ["00-a-b-01", ""]), encode_payload(1))]
    )
    inbound.handle_frames(
        [encode_message(GOOD_KEY, encode_header("p", 2, 1, 1), encode_payload(2))]
    )  # fast path
    assert got == [(("t", "x"), 1, 1), (("t", "x"), 2, 2)]
    got.clear()
    inbound.handle_frames(
        [encode_message(GOOD_KEY, encode_header("p", 3, 1, 1, ["00-a-b-01", ""]), encode_payload(1))]
    )
    assert got == [(("t", "x"), 1, 3)]
    got[:] = [(("t", "x"), 1, 1)]
    assert got == [(("t", "x"), 1, 1)]


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
