"""The benchmark message, shared by every system so that each moves the same bytes.

A message is tickbus's three frames ``[key, header, payload]``: the key ``b"quote\\x00AAPL\\x00"``,
a 42-byte msgpack header ``[version, publisher, seq, mono_ns, wall_ns, trace]`` shaped like
tickbus's envelope header, and a ~57-byte msgpack quote dict encoded afresh for every message (an
application publishes a dict, not cached bytes). Systems without frames (NATS, Redis) carry
``header + payload`` concatenated as one body on subject/channel ``quote.AAPL``.

``seq`` tells the subscriber what a message is: ``>= 0`` a measured message, :data:`PRIME` a
probe sent until every subscriber is known to be receiving, :data:`WARM` warm-up traffic and
:data:`END` the end of the run. ``mono_ns`` is ``time.monotonic_ns()`` at send, comparable between
processes of one host, so the subscriber computes one-way latency directly.
"""

from __future__ import annotations

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

_FORMAT_VERSION = 1
_QUOTE: dict[str, Any] = {"px": 101.25, "qty": 300, "bid": 101.24, "ask": 101.26, "venue": "XNAS"}

_pack = msgpack.Packer(use_bin_type=True).pack


def quote() -> dict[str, Any]:
    """A fresh copy of the quote dict every system publishes."""
    return dict(_QUOTE)


def header(seq: int) -> bytes:
    """The 42-byte header of message ``seq``, stamped with the send time."""
    return _pack((_FORMAT_VERSION, PUBLISHER, seq, time.monotonic_ns(), time.time_ns(), None))


def frames(seq: int) -> tuple[bytes, bytes, bytes]:
    """``[key, header, payload]`` for a framed transport (raw ZeroMQ)."""
    return KEY, header(seq), _pack(_QUOTE)


def body(seq: int) -> bytes:
    """``header + payload`` as one message body (NATS, Redis)."""
    return header(seq) + _pack(_QUOTE)


class BodyDecoder:
    """Decodes ``header + payload`` bodies with one reused unpacker; returns ``(seq, sent_ns)``."""

    def __init__(self) -> None:
        self._unpacker = msgpack.Unpacker(raw=False)

    def __call__(self, data: bytes) -> tuple[int, int]:
        unpacker = self._unpacker
        unpacker.feed(data)
        head = unpacker.unpack()
        unpacker.unpack()  # the payload: decoded, as any real subscriber would, then dropped
        return head[2], head[3]


def decode_frames(head: bytes, payload: bytes) -> tuple[int, int]:
    """``(seq, sent_ns)`` of a framed message; the payload is decoded too, for a fair cost."""
    fields = msgpack.unpackb(head)
    msgpack.unpackb(payload)
    return fields[2], fields[3]
