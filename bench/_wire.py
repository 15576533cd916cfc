"""The benchmark message, shared by every system so that each moves the same bytes.

A message is tickbus's one frame (envelope format 2): the key ``b"quote\\x00AAPL\\x00"``, the key
end ``0xff``, a 42-byte binary header (27 fixed bytes and the 15-byte publisher id) and a ~57-byte
msgpack quote dict encoded afresh for every message (an application publishes a dict, not cached
bytes). Systems without keyed frames (NATS, Redis) carry ``header + payload`` as one body on
subject/channel ``quote.AAPL``.

``seq`` tells the subscriber what a message is: ``>= 0`` a measured message, :data:`PRIME` a
probe sent until every subscriber is known to be receiving, :data:`WARM` warm-up traffic and
:data:`END` the end of the run. ``mono_ns`` is ``time.monotonic_ns()`` at send, comparable between
processes of one host, so the subscriber computes one-way latency directly.
"""

from __future__ import annotations

import struct
import time
from typing import Any

import msgpack

PRIME = -1
WARM = -2
END = -3

KEY = b"quote\x00AAPL\x00"
KEY_PREFIX = b"quote\x00"
SUBJECT = "quote.AAPL"
NATS_WILDCARD = "quote.>"
REDIS_PATTERN = "quote.*"
PUBLISHER = "bench-pub-00000"  # fixed length keeps the header at 42 bytes

_FORMAT_VERSION = 2
_FIXED = struct.Struct("<BBBqqq")  # tickbus's header layout (seq signed here: probes are negative)
_ID = PUBLISHER.encode()
_QUOTE: dict[str, Any] = {"px": 101.25, "qty": 300, "bid": 101.24, "ask": 101.26, "venue": "XNAS"}

_pack = msgpack.Packer(use_bin_type=True).pack


def quote() -> dict[str, Any]:
    """A fresh copy of the quote dict every system publishes."""
    return dict(_QUOTE)


def header(seq: int) -> bytes:
    """The 42-byte header of message ``seq``, stamped with the send time."""
    return _FIXED.pack(_FORMAT_VERSION, 0, len(_ID), seq, time.monotonic_ns(), time.time_ns()) + _ID


def frame(seq: int) -> bytes:
    """The one frame ``key 0xff header payload`` for a keyed transport (raw ZeroMQ)."""
    return KEY + b"\xff" + header(seq) + _pack(_QUOTE)


def body(seq: int) -> bytes:
    """``header + payload`` as one message body (NATS, Redis)."""
    return header(seq) + _pack(_QUOTE)


_HEADER_LEN = _FIXED.size + len(_ID)
_unpack_fixed = _FIXED.unpack_from
_unpackb = msgpack.unpackb


class BodyDecoder:
    """Decodes ``header + payload`` bodies; returns ``(seq, sent_ns)``."""

    def __call__(self, data: bytes) -> tuple[int, int]:
        fields = _unpack_fixed(data)
        _unpackb(data[_HEADER_LEN:])  # the payload: decoded, as any real subscriber would, then dropped
        return fields[3], fields[4]


def decode_frame(data: bytes) -> tuple[int, int]:
    """``(seq, sent_ns)`` of a keyed frame; the payload is decoded too, for a fair cost."""
    start = data.find(b"\xff") + 1
    fields = _unpack_fixed(data, start)
    _unpackb(data[start + _HEADER_LEN :])
    return fields[3], fields[4]
