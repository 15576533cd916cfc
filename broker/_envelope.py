"""The envelope: three ZeroMQ frames per message, ``[key, header, payload]``.

- ``key``: the key's wire form (see :mod:`broker._keys`), first so ZeroMQ's prefix filter sees it.
- ``header``: a msgpack array ``[version, publisher, seq, mono_ns, wall_ns, trace]``:
  ``version`` is :data:`FORMAT_VERSION`; ``publisher`` the publishing hub's id, one per
  incarnation (``name@host:pid:token``, see :mod:`broker._reserved`) so a restarted publisher is a
  new publisher, never a sequence error; ``seq`` counts from 1 per (publisher, key); ``mono_ns``
  is ``time.monotonic_ns()`` (comparable between processes of one host) and ``wall_ns``
  ``time.time_ns()`` (between hosts);
  ``trace`` is ``None`` or a ``[traceparent, tracestate]`` pair for sampled messages.
- ``payload``: msgpack. Extra types go through :func:`register_type`; ``Decimal``, ``datetime``
  and ``date`` are registered by default. Arrays decode as lists, maps as dicts.

Decoding never raises anything but :class:`EnvelopeError`, so a receive loop can count and drop.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import msgpack

from observability import EnvelopeError

FORMAT_VERSION = 1
FRAMES = 3
_HEADER_FIELDS = 6
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


_make_header = Header._make

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
    ``max_container_len`` elements. Nesting stops at msgpack's own limit of 1,024 levels.
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
        return _unpackb(data, ext_hook=ext_hook, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types, and so can ext hooks
        raise EnvelopeError(f"payload is not valid msgpack: {exc}") from exc


def encode_header(
    publisher: str, seq: int, mono_ns: int, wall_ns: int, trace: list[str] | None = None
) -> bytes:
    """msgpack bytes of an envelope header: the only place its field order is written."""
    return _pack_header((FORMAT_VERSION, publisher, seq, mono_ns, wall_ns, trace))


def decode_header(data: bytes | memoryview) -> Header:
    """The header of a frame; raises :class:`EnvelopeError` when it is malformed.

    The receive path calls this for every message: the common shape (no trace context) is checked
    in one expression, anything else goes to :func:`_decode_unusual_header`.
    """
    if len(data) > MAX_HEADER_BYTES:
        raise EnvelopeError(f"header of {len(data)} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")
    try:
        fields = _unpackb(data, use_list=False)  # <= 1 KiB: at most ~1,000 small objects
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise EnvelopeError(f"header is not valid msgpack: {exc}") from exc
    if (
        type(fields) is tuple
        and len(fields) == _HEADER_FIELDS
        and fields[0] == FORMAT_VERSION
        and type(fields[1]) is str
        and type(fields[2]) is int
        and fields[2] > 0
        and type(fields[3]) is int
        and type(fields[4]) is int
        and fields[5] is None
    ):
        return _make_header(fields)
    return _decode_unusual_header(fields, data)


def _decode_unusual_header(fields: Any, data: bytes | memoryview) -> Header:
    if type(fields) is not tuple or len(fields) != _HEADER_FIELDS:
        raise EnvelopeError(f"header is not a {_HEADER_FIELDS}-field array: {bytes(data[:40])!r}")
    version, publisher, seq, mono_ns, wall_ns, trace = fields
    if version != FORMAT_VERSION:
        raise EnvelopeError(
            f"header format version {version!r} is not this receiver's version {FORMAT_VERSION}"
        )
    if (
        type(publisher) is not str
        or type(seq) is not int
        or seq < 1
        or type(mono_ns) is not int
        or type(wall_ns) is not int
    ):
        raise EnvelopeError(f"header fields have wrong types: {fields!r:.120}")
    if trace is not None:
        if type(trace) is not tuple or len(trace) != 2 or not all(type(t) is str for t in trace):
            raise EnvelopeError(f"header trace context is not [traceparent, tracestate]: {trace!r:.80}")
        trace = list(trace)
    return Header(version, publisher, seq, mono_ns, wall_ns, trace)
