"""The envelope: one ZeroMQ frame per message, ``key KEY_END header payload``.

Format version 2 (version 1 sent three frames ``[key, header, payload]``; one frame costs a third
of the receive and send calls, which was most of the bus's per-message cost):

- ``key``: the key's wire form (see :mod:`broker._keys`), first so ZeroMQ's prefix filter sees it,
  then :data:`KEY_END` (``0xff``, a byte UTF-8 never contains), so the key ends at the first ``0xff``.
- ``header``: a fixed little-endian part ``version u8, flags u8, publisher length u8, seq u64,
  mono_ns i64, wall_ns i64`` (27 bytes), the publisher id (UTF-8), and when ``flags & 1`` a trace
  context: ``u16`` length and a msgpack ``[traceparent, tracestate]``.
  ``version`` is :data:`FORMAT_VERSION`; ``publisher`` the publishing hub's id, one per
  incarnation (``name@host:pid:token``, see :mod:`broker._reserved`) so a restarted publisher is a
  new publisher, never a sequence error; ``seq`` counts from 1 per (publisher, key); ``mono_ns``
  is ``time.monotonic_ns()`` (comparable between processes of one host) and ``wall_ns``
  ``time.time_ns()`` (between hosts).
- ``payload``: msgpack, the rest of the frame. Extra types go through :func:`register_type`;
  ``Decimal``, ``datetime`` and ``date`` are registered by default. Arrays decode as lists, maps
  as dicts.

Decoding never raises anything but :class:`EnvelopeError`, so a receive loop can count and drop;
a message of another format version is refused with a reason naming both versions.
"""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import msgpack
import msgspec

from observability import EnvelopeError

FORMAT_VERSION = 2
FRAMES = 1
KEY_END = b"\xff"
"""The byte after a key's wire form: UTF-8 never contains it, so the first one ends the key."""
FIXED = struct.Struct("<BBBQqq")
"""The header's fixed part: version, flags, publisher id length, seq, mono_ns, wall_ns."""
FLAG_TRACE = 1
_TRACE_LEN = struct.Struct("<H")
MAX_PUBLISHER_ID = 255
"""Bytes of a publisher id (its length is one byte of the header). An ask's inbox is a publisher id:
hubs and the checked broker refuse a longer ``reply_to``."""
MAX_HEADER_BYTES = 1024
"""Bytes of one header frame: a publisher id and a trace context fit easily; the bound keeps what a
header can build to a few dozen kilobytes, so no per-field decode limits are needed."""


class Header(NamedTuple):
    """A decoded envelope header."""

    version: int
    publisher: str
    seq: int
    mono_ns: int
    wall_ns: int
    trace: list[str] | None


_encoders: dict[type, tuple[int, Callable[[Any], bytes]]] = {}
_decoders: dict[int, Callable[[bytes], Any]] = {}


def register_type(
    cls: type, code: int, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]
) -> None:
    """Teach the payload codec a type: ``encode(obj) -> bytes`` and ``decode(bytes) -> obj``.

    ``code`` is a msgpack extension code, 0..127, unique per type; 1..15 are tickbus's own.
    Every process of a system must register the same types before it publishes or receives them.

    >>> from fractions import Fraction
    >>> register_type(Fraction, 64, lambda f: str(f).encode(), lambda b: Fraction(b.decode()))
    """
    if not 0 <= code <= 127:
        raise ValueError(f"extension code {code} for {cls.__name__} is outside 0..127")
    owner = next((c for c, (k, _) in _encoders.items() if k == code and c is not cls), None)
    if owner is not None:
        raise ValueError(f"extension code {code} is already used by {owner.__name__}; pick another")
    _encoders[cls] = (code, encode)
    _decoders[code] = decode


def _default(obj: Any) -> Any:
    entry = _encoders.get(type(obj))
    if entry is None:
        for cls, candidate in _encoders.items():
            if isinstance(obj, cls):
                entry = candidate
                break
        else:
            raise TypeError(
                f"cannot encode {type(obj).__name__} in a payload; use plain data or "
                "actors.register_type() for it"
            )
    code, encode = entry
    return msgpack.ExtType(code, encode(obj))


def ext_hook(code: int, data: bytes) -> Any:
    """msgpack's ``ext_hook`` for payloads: a registered type's decoder, else the raw ``ExtType``."""
    decode = _decoders.get(code)
    if decode is None:
        return msgpack.ExtType(code, data)
    return decode(data)


register_type(Decimal, 1, lambda d: str(d).encode(), lambda b: Decimal(b.decode()))
# datetime before date: datetime is a subclass of date and isinstance() lookups go in insertion order.
register_type(
    _dt.datetime, 2, lambda d: d.isoformat().encode(), lambda b: _dt.datetime.fromisoformat(b.decode())
)
register_type(_dt.date, 3, lambda d: d.isoformat().encode(), lambda b: _dt.date.fromisoformat(b.decode()))

_packer = msgpack.Packer(default=_default, use_bin_type=True)
_pack_header = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb


def _ext_from_view(code: int, data: memoryview) -> Any:
    return ext_hook(code, bytes(data))


# Payloads up to DecodeLimits.counted_above decode with msgspec: ~230 ns for a 6-field quote against
# msgpack's ~540 (measured), and as strict (trailing bytes, bad opcodes and truncation raise; nesting
# stops at Python's recursion limit). Two differences from msgpack, both in values only a foreign
# encoder sends: the timestamp extension (-1) decodes to a datetime, an array as a map key to a tuple.
decode_small_payload = msgspec.msgpack.Decoder(ext_hook=_ext_from_view).decode
pack_payload = _packer.pack  # the hot path calls these two directly; encode_payload wraps them
reset_payload_packer = _packer.reset


def encode_payload(payload: Any) -> bytes:
    """msgpack bytes of a payload; raises ``TypeError`` naming a type it cannot encode."""
    try:
        return _packer.pack(payload)
    except (TypeError, ValueError, OverflowError):
        _packer.reset()
        raise


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What decoding one payload from the wire may build: every byte of it is untrusted.

    msgpack turns one byte into a Python object (an empty map is one byte and ~64 bytes of dict), so
    bytes alone do not bound memory. A payload up to ``counted_above`` bytes decodes in one C call
    (it cannot build more than ``counted_above`` containers); a larger one decodes with every array
    and map counted, and fails as soon as it passes ``max_containers`` or one of them passes
    ``max_container_len`` elements. Nesting stops at Python's recursion limit (msgspec, small
    payloads; keep it near its default of 1,000) or at msgpack's fixed 1,024 levels (large ones).
    """

    max_bytes: int = 1024 * 1024
    """Bytes of one payload frame; larger ones are dropped before decoding (``oversize``)."""
    max_containers: int = 100_000
    """Arrays and maps in one payload larger than ``counted_above``."""
    max_container_len: int = 1_000_000
    """Elements of one array or map (and bytes of one string or binary) in a large payload."""
    counted_above: int = 64 * 1024
    """Payloads up to this many bytes decode without counting (the fast path)."""

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_containers", "max_container_len", "counted_above"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"decode limit {name}={value!r} is not an integer >= 1")


DEFAULT_LIMITS = DecodeLimits()


class _ContainerBudgetError(Exception):
    pass


def decode_large_payload(data: bytes | memoryview, limits: DecodeLimits) -> Any:
    """Decode a payload larger than ``limits.counted_above``, counting its containers.

    Raises :class:`EnvelopeError` naming the limit that bit; the caller checked ``max_bytes``.
    """
    left = limits.max_containers

    def count(obj: Any) -> Any:
        nonlocal left
        left -= 1
        if left < 0:
            raise _ContainerBudgetError
        return obj

    n = limits.max_container_len
    try:
        return _unpackb(
            data,
            ext_hook=ext_hook,
            strict_map_key=False,
            list_hook=count,
            object_hook=count,
            max_array_len=n,
            max_map_len=n,
            max_str_len=n,
            max_bin_len=n,
            max_ext_len=n,
        )
    except _ContainerBudgetError:
        raise EnvelopeError(
            f"payload of {len(data)} bytes holds more than {limits.max_containers} arrays and maps "
            "(max_containers)"
        ) from None
    except Exception as exc:  # msgpack raises several unrelated types, and so can ext hooks
        raise EnvelopeError(f"payload is not valid msgpack: {exc}") from exc


def decode_payload(data: bytes | memoryview, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """The payload of a frame; raises :class:`EnvelopeError` when it is not valid msgpack or too big.

    ``limits`` bounds what a payload may build (see :class:`DecodeLimits`).
    """
    if len(data) > limits.max_bytes:
        raise EnvelopeError(f"payload of {len(data)} bytes exceeds the {limits.max_bytes}-byte limit")
    if len(data) > limits.counted_above:
        return decode_large_payload(data, limits)
    try:
        return decode_small_payload(data)
    except Exception as exc:  # the decoder raises several unrelated types, and so can ext hooks
        raise EnvelopeError(f"payload is not valid msgpack: {exc}") from exc


_pack_fixed = FIXED.pack
_unpack_fixed = FIXED.unpack_from
_FIXED_SIZE = FIXED.size
_publishers: dict[bytes, str] = {}  # publisher id bytes -> str: a handful per bus, bounded below


def encode_header(
    publisher: str, seq: int, mono_ns: int, wall_ns: int, trace: list[str] | None = None
) -> bytes:
    """The bytes of an envelope header: the only place its layout is written (see the module doc)."""
    pub = publisher.encode()
    if len(pub) > MAX_PUBLISHER_ID:
        raise EnvelopeError(
            f"publisher id {publisher[:40]!r}... is {len(pub)} bytes, over {MAX_PUBLISHER_ID}"
        )
    if trace is None:
        return _pack_fixed(FORMAT_VERSION, 0, len(pub), seq, mono_ns, wall_ns) + pub
    return encode_traced_header(pub, seq, mono_ns, wall_ns, trace)


def encode_traced_header(pub: bytes, seq: int, mono_ns: int, wall_ns: int, trace: list[str]) -> bytes:
    """:func:`encode_header` with a trace context, for a publisher id already encoded (<= 255 bytes)."""
    context = _pack_header(trace)
    return (
        _pack_fixed(FORMAT_VERSION, FLAG_TRACE, len(pub), seq, mono_ns, wall_ns)
        + pub
        + _TRACE_LEN.pack(len(context))
        + context
    )


def encode_message(kb: bytes, header: bytes, payload: bytes) -> bytes:
    """The one frame of a message: wire key, :data:`KEY_END`, header bytes, payload bytes."""
    return kb + KEY_END + header + payload


def header_length(frame: bytes | memoryview, start: int) -> int:
    """Bytes of the header that starts at ``frame[start]``; :class:`EnvelopeError` when it is cut short
    or of another format version."""
    if len(frame) < start + _FIXED_SIZE:
        if len(frame) > start and frame[start] != FORMAT_VERSION:
            raise _version_error(frame[start])
        raise EnvelopeError(f"header of {len(frame) - start} bytes is shorter than {_FIXED_SIZE}")
    version, flags, publen = frame[start], frame[start + 1], frame[start + 2]
    if version != FORMAT_VERSION:
        raise _version_error(version)
    end = start + _FIXED_SIZE + publen
    if flags & FLAG_TRACE:
        if len(frame) < end + 2:
            raise EnvelopeError("header's trace context is cut short")
        end += 2 + _TRACE_LEN.unpack_from(frame, end)[0]
    if end > len(frame):
        raise EnvelopeError(f"header of {end - start} bytes runs past the {len(frame)}-byte frame")
    if end - start > MAX_HEADER_BYTES:
        raise EnvelopeError(f"header of {end - start} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    return end - start


def _version_error(version: int) -> EnvelopeError:
    return EnvelopeError(
        f"envelope format version {version} is not this receiver's version {FORMAT_VERSION}; "
        "upgrade the older side (every process of a bus speaks one version)"
    )


def split_message(frame: bytes) -> tuple[bytes, bytes, bytes]:
    """``(wire key, header bytes, payload bytes)`` of a frame, without decoding them.

    :class:`EnvelopeError` when the frame has no key end or its header is malformed in length or
    version (the broker's cache and forwarder use this; hubs decode with :func:`decode_message`).
    """
    end = frame.find(KEY_END)
    if end < 0:
        raise EnvelopeError(_no_key_end(frame))
    start = end + 1
    stop = start + header_length(frame, start)
    return frame[:end], frame[start:stop], frame[stop:]


def _no_key_end(frame: bytes) -> str:
    if frame.endswith(b"\0"):
        return (
            f"frame {frame[:40]!r} is a bare key: a format-1 sender (three frames) or not tickbus; "
            f"this receiver speaks format {FORMAT_VERSION} (one frame)"
        )
    return f"frame {frame[:40]!r} has no key end (0xff): not a format-{FORMAT_VERSION} tickbus message"


def describe_frames(frames: list[bytes]) -> str:
    """Why a multi-frame message is refused, naming its format version when it looks like one."""
    if len(frames) == 3:
        try:
            fields = _unpackb(frames[1][:MAX_HEADER_BYTES], use_list=False)
        except Exception:
            fields = None
        if type(fields) is tuple and fields and type(fields[0]) is int:
            return (
                f"a message of envelope format version {fields[0]} (three frames); "
                f"this receiver speaks format {FORMAT_VERSION} (one frame)"
            )
    return f"a message of {len(frames)} frames (format {FORMAT_VERSION} sends one)"


def decode_header(data: bytes | memoryview) -> Header:
    """The header in ``data`` (exactly its bytes); raises :class:`EnvelopeError` when it is malformed."""
    if len(data) > MAX_HEADER_BYTES:
        raise EnvelopeError(f"header of {len(data)} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    size = header_length(data, 0)
    if size != len(data):
        raise EnvelopeError(f"header is {len(data)} bytes, its fields say {size}")
    return decode_header_at(data, 0)


def decode_header_at(frame: bytes | memoryview, start: int) -> Header:
    """The header at ``frame[start]``, whose length :func:`header_length` checked."""
    version, flags, publen, seq, mono_ns, wall_ns = _unpack_fixed(frame, start)
    at = start + _FIXED_SIZE
    raw = bytes(frame[at : at + publen])
    publisher = _publishers.get(raw)
    if publisher is None:
        try:
            publisher = raw.decode()
        except UnicodeDecodeError:
            raise EnvelopeError(f"header's publisher id {raw[:40]!r} is not UTF-8") from None
        if len(_publishers) >= 10_000:
            _publishers.clear()
        _publishers[raw] = publisher
    if seq < 1:
        raise EnvelopeError(f"header's seq {seq} is not >= 1")
    trace = None
    if flags & FLAG_TRACE:
        at += publen
        (size,) = _TRACE_LEN.unpack_from(frame, at)
        trace = _decode_trace(frame[at + 2 : at + 2 + size])
    return Header(version, publisher, seq, mono_ns, wall_ns, trace)


def trace_at(frame: bytes, at: int, start: int) -> tuple[list[str], int] | None:
    """``(trace context, end of the header)`` of a header with only :data:`FLAG_TRACE` set that
    began at ``frame[start]``, its publisher id ending at ``frame[at]``; None when that part is not
    well-formed, for the checked path (:func:`header_length`, :func:`decode_header_at`) to say why.
    What it returns is what :func:`decode_header_at` decodes: a receive path's inline shape for
    sampled messages."""
    end = at + 2
    if end > len(frame):
        return None
    end += _TRACE_LEN.unpack_from(frame, at)[0]
    if end > len(frame) or end - start > MAX_HEADER_BYTES:
        return None
    try:
        return _decode_trace(frame[at + 2 : end]), end
    except EnvelopeError:
        return None


def _decode_trace(data: bytes | memoryview) -> list[str]:
    try:
        trace = _unpackb(data, use_list=False)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise EnvelopeError(f"header's trace context is not valid msgpack: {exc}") from exc
    if type(trace) is not tuple or len(trace) != 2 or type(trace[0]) is not str or type(trace[1]) is not str:
        raise EnvelopeError(f"header trace context is not [traceparent, tracestate]: {trace!r:.80}")
    return [trace[0], trace[1]]


def decode_message(frame: bytes) -> tuple[bytes, Header, bytes]:
    """``(wire key, header, payload bytes)`` of a frame; :class:`EnvelopeError` when malformed."""
    end = frame.find(KEY_END)
    if end < 0:
        raise EnvelopeError(_no_key_end(frame))
    start = end + 1
    stop = start + header_length(frame, start)
    return frame[:end], decode_header_at(frame, start), frame[stop:]
