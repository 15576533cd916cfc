"""The envelope codec, without sockets."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import (
    DecodeLimits,
    EnvelopeError,
    decode_header,
    decode_payload,
    encode_header,
    encode_payload,
    register_type,
)
from broker import (
    FIXED,
    FORMAT_VERSION,
    decode_message,
    decode_small_payload,
    describe_frames,
    encode_message,
    split_message,
)


def test_header_round_trips_with_and_without_trace_context():
    plain = decode_header(encode_header("feed@h:1:ab", 7, 123, 456))
    assert (plain.version, plain.publisher, plain.seq, plain.mono_ns, plain.wall_ns, plain.trace) == (
        2,
        "feed@h:1:ab",
        7,
        123,
        456,
        None,
    )
    traced = decode_header(encode_header("p", 1, 1, 1, ["00-abc-def-01", "k=v"]))
    assert traced.trace == ["00-abc-def-01", "k=v"]


def test_payload_round_trips_decimal_and_datetimes():
    now = dt.datetime(2026, 11, 24, 16, 0, 1, 5, tzinfo=dt.UTC)
    payload = {
        "px": Decimal("101.25"),
        "at": now,
        "day": dt.date(2026, 11, 24),
        "naive": now.replace(tzinfo=None),
    }
    assert decode_payload(encode_payload(payload)) == payload


def test_register_type_adds_an_extension_and_refuses_a_taken_code():
    register_type(Fraction, 64, lambda f: str(f).encode(), lambda b: Fraction(b.decode()))
    assert decode_payload(encode_payload([Fraction(1, 3)])) == [Fraction(1, 3)]
    with pytest.raises(ValueError, match="already used by Fraction"):
        register_type(complex, 64, lambda c: b"", lambda b: 0j)


def test_unknown_payload_type_is_named_in_the_error():
    with pytest.raises(TypeError, match="cannot encode object"):
        encode_payload({"x": object()})
    assert decode_payload(encode_payload({"x": 1})) == {"x": 1}  # the packer recovered


def _fixed(version=FORMAT_VERSION, flags=0, publen=1, seq=1):
    return FIXED.pack(version, flags, publen, seq, 1, 1)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\x02\x00", "shorter than 27"),
        (_fixed(version=1) + b"p", "format version 1 is not this receiver's version 2"),
        (b"\x01\x00", "format version 1 is not this receiver's version 2"),
        (_fixed(version=3) + b"p", "format version 3 is not this receiver's version 2"),
        (_fixed(publen=5) + b"p", "runs past"),
        (_fixed() + b"p" + b"extra", "its fields say 28"),
        (_fixed(seq=0) + b"p", "seq 0 is not >= 1"),
        (_fixed() + b"\xfe", "not UTF-8"),
        (_fixed(flags=1) + b"p", "trace context is cut short"),
        (_fixed(flags=1) + b"p" + b"\x02\x00\x91\xa0", "trace context is not"),
        (_fixed(flags=1) + b"p" + b"\x01\x00\xc1", "not valid msgpack"),
    ],
)
def test_malformed_headers_raise_envelope_error_with_the_reason(frame, reason):
    with pytest.raises(EnvelopeError, match=reason):
        decode_header(frame)


def test_a_message_is_one_frame_key_first_so_zeromq_prefix_filters_see_the_key():
    header = encode_header("feed@h:1:ab", 3, 10, 20)
    frame = encode_message(b"quote\x00AAPL\x00", header, encode_payload({"px": 1}))
    assert frame.startswith(b"quote\x00AAPL\x00\xff")
    assert split_message(frame) == (b"quote\x00AAPL\x00", header, encode_payload({"px": 1}))
    kb, decoded, payload = decode_message(frame)
    assert (kb, decoded.seq, decode_payload(payload)) == (b"quote\x00AAPL\x00", 3, {"px": 1})
    traced = encode_message(b"k\x00", encode_header("p", 1, 1, 1, ["00-a-b-01", ""]), b"\x01")
    assert decode_message(traced)[1].trace == ["00-a-b-01", ""] and decode_message(traced)[2] == b"\x01"


def test_other_format_versions_are_refused_naming_both_versions():
    v1 = [b"quote\x00AAPL\x00", msgpack.packb([1, "p", 1, 1, 1, None]), msgpack.packb({"px": 1})]
    assert "format version 1 (three frames)" in describe_frames(v1)
    assert "speaks format 2" in describe_frames(v1)
    with pytest.raises(EnvelopeError, match="format-1 sender"):
        decode_message(v1[0])  # the first frame of a format-1 message alone
    with pytest.raises(EnvelopeError, match="format version 3 is not this receiver's version 2"):
        decode_message(b"k\x00\xff" + _fixed(version=3) + b"p")


def test_a_publisher_id_over_255_bytes_is_refused_at_encoding():
    with pytest.raises(EnvelopeError, match="over 255"):
        encode_header("p" * 300, 1, 1, 1)


def test_oversize_payload_is_refused_before_decoding():
    with pytest.raises(EnvelopeError, match="exceeds"):
        decode_payload(b"\x00" * 11, DecodeLimits(max_bytes=10))


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise_anything_but_envelope_error(data):
    for decode in (decode_header, decode_payload):
        try:
            decode(data)
        except EnvelopeError:
            pass


_FIELD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.lists(st.text(max_size=4), max_size=3),
)


@given(
    st.lists(_FIELD, min_size=0, max_size=8).map(
        lambda fields: fields if len(fields) != 6 or not isinstance(fields[0], int) else [1, *fields[1:]]
    )
)
def test_every_header_shape_decodes_to_its_fields_or_is_refused(fields):
    """The one decoder checks the common shape in one expression and the rest slowly: on every shape,
    well-formed or not, it returns exactly the fields of a valid header or raises EnvelopeError."""
    frame = msgpack.packb(fields)
    valid = (
        len(fields) == 6
        and fields[0] == 1
        and type(fields[1]) is str
        and type(fields[2]) is int
        and fields[2] > 0
        and type(fields[3]) is int
        and type(fields[4]) is int
        and (fields[5] is None or (isinstance(fields[5], list) and len(fields[5]) == 2))
    )
    try:
        header = decode_header(frame)
    except EnvelopeError:
        assert not valid
    else:
        assert valid
        assert tuple(header)[:5] == tuple(fields[:5])
        assert header.trace == fields[5]


def test_a_large_payload_of_empty_maps_is_refused_at_the_container_budget():
    # 900 KB of empty maps would build 900,000 dicts (~58 MB); the budget stops it at 100,000
    n = 900_000
    data = b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n
    with pytest.raises(EnvelopeError, match="max_containers"):
        decode_payload(data)
    limits = DecodeLimits(max_containers=10, counted_above=8)
    assert decode_payload(encode_payload([{}] * 9), limits) == [{}] * 9
    with pytest.raises(EnvelopeError, match="more than 10 arrays and maps"):
        decode_payload(encode_payload([{}] * 10), limits)


def test_a_large_payload_with_one_overlong_container_is_refused():
    limits = DecodeLimits(max_container_len=100, counted_above=8)
    assert len(decode_payload(encode_payload(list(range(100))), limits)) == 100
    with pytest.raises(EnvelopeError, match="not valid msgpack"):
        decode_payload(encode_payload(list(range(101))), limits)


def test_nesting_stops_at_msgpacks_own_depth_limit():
    with pytest.raises(EnvelopeError):
        decode_payload(b"\x91" * 2000 + b"\xc0")


def test_an_overlong_header_is_refused_before_decoding():
    with pytest.raises(EnvelopeError, match="exceeds the 1024-byte limit"):
        decode_header(encode_header("p", 1, 1, 1, ["t" * 2000, ""]))
    assert decode_header(encode_header("p@h:1:ab", 1, 1, 1)).publisher == "p@h:1:ab"


@pytest.mark.parametrize("name", ["max_bytes", "max_containers", "max_container_len", "counted_above"])
def test_decode_limits_refuse_nonsense(name):
    with pytest.raises(ValueError, match=name):
        DecodeLimits(**{name: 0})


def test_small_payloads_decode_strictly_and_registered_types_round_trip():
    value = {
        "px": Decimal("101.25"),
        "at": dt.datetime(2026, 12, 4, 9, 30),
        "d": dt.date(2026, 12, 4),
        7: [b"x"],
    }
    assert decode_small_payload(encode_payload(value)) == value
    assert decode_small_payload(msgpack.packb(msgpack.ExtType(42, b"ab"))) == msgpack.ExtType(42, b"ab")
    for bad in (encode_payload({"n": 1}) + b"\x01", b"\xc1", encode_payload([1, 2])[:-1], b""):
        with pytest.raises(Exception):  # noqa: B017 -- msgspec's DecodeError; callers count any
            decode_small_payload(bad)
        with pytest.raises(EnvelopeError, match="not valid msgpack"):
            decode_payload(bad)
