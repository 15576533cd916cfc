"""The broker's last-value cache: the latest message per key, served as snapshots to late joiners.

Opt-in per key pattern (``tickbus broker --lvc 'price.*'``; ``--lvc '*'`` for every non-reserved
key); without one there is no cache and no thread. Opt-in because it is not free, measured with
``make bench``: every cached message costs this thread a Python receive (~2 µs), on the broker's
host, and a cached key always has a subscriber, so publishers no longer skip it. Caching every key
cut the 1->1 throughput on the 2-core bench machine from ~170k to ~70k msgs/s.

Feeding it: a SUB socket of the broker's own, connected over inproc to the backend like any
subscriber (to the patterns' wire prefixes; for a leading ``*``, to every first byte but ``$``, so
reserved keys keep telling publishers exactly who listens). Bounded by ``lvc_max_keys`` and
``lvc_max_bytes``: past either, the least recently *updated* keys are evicted (counted).

Serving it (the Clone pattern of the ZeroMQ guide, the subscriber half is ``actors._snapshot``): a
client subscribes to its live keys first, then to its own inbox ``('$lvc', 'snap', <publisher id>)``,
and publishes ``{"id", "pattern", "inbox"}`` on ``('$lvc', 'req')``. This thread answers on the inbox
with parts ``{"id", "part", "parts", "entries": [[key, header, payload], ...]}``, raw frames as
received, so the client checks and decodes them like live messages and drops live updates not newer
by sequence. A request for a pattern the cache does not cover gets ``{"id", "error"}`` instead.
Requests and replies ride the broker like everything else (same sockets, same CURVE).

If this thread falls behind, its queue overflows and the cache holds older values for a while: the
gap is counted in ``dropped`` (from the sequence numbers it sees), and a snapshot is never older
than what the cache acknowledged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq
from loguru import logger

from observability import InvalidKeyError, RateLimitedLog

from ._envelope import encode_header
from ._keys import decode_key, encode_key, matches, subscription_prefix, validate
from ._reserved import LVC_INBOX as INBOX
from ._reserved import LVC_REQUEST as REQUEST

_PART_ENTRIES = 512
_PART_BYTES = 1 << 20
_ENTRY_OVERHEAD = 120  # bytes of Python objects per cached entry, roughly


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """Counters of the last-value cache."""

    keys: int
    bytes: int
    updates: int
    evicted: int
    snapshots: int
    refused: int
    malformed: int = 0  # messages and requests dropped because they did not decode (never fatal)


class LastValueCache:
    """Latest ``(header, payload)`` per wire key, bounded in keys and bytes. Socket-free."""

    def __init__(self, *, max_keys: int, max_bytes: int, patterns: Sequence[tuple[str, ...]]) -> None:
        self._entries: dict[bytes, tuple[bytes, bytes]] = {}
        self._max_keys, self._max_bytes = max_keys, max_bytes
        self._patterns = tuple(patterns)
        # a pattern's wire prefix selects exactly its keys only for ('*',) and (literal..., '*')
        self._exact_prefixes = not all(
            p == ("*",) or ("*" not in p[:-1] and p[-1] == "*") for p in self._patterns
        )
        self._bytes = 0
        self.updates = self.evicted = self.snapshots = self.refused = self.malformed = 0

    def prefixes(self) -> list[bytes]:
        """Wire prefixes to subscribe to: the patterns', a leading ``*`` as every first byte but ``$``.

        Not ``b""``: reserved keys (requests, heartbeats, ...) must keep telling publishers exactly
        who listens, so that, for instance, asking a key nobody answers fails at once.
        """
        out: set[bytes] = set()
        for pattern in self._patterns:
            prefix = subscription_prefix(pattern)
            out.update([bytes([b]) for b in range(1, 256) if b != ord("$")] if prefix == b"" else [prefix])
        return sorted(out)

    def covers(self, pattern: tuple[str, ...]) -> bool:
        """True when every key ``pattern`` matches is one this cache keeps."""
        return any(matches(pattern, own) for own in self._patterns)

    def store(self, kb: bytes, header: bytes, payload: bytes) -> None:
        """Keep this message as ``kb``'s latest (reserved keys and unwanted patterns are ignored)."""
        if kb[:1] == b"$":
            return
        if self._exact_prefixes:  # subscribed more widely than the patterns: check each key
            try:
                key = decode_key(kb)
            except InvalidKeyError:
                self.malformed += 1
                return
            if not any(matches(key, p) for p in self._patterns):
                return
        old = self._entries.pop(kb, None)  # re-inserted last: dict order is update order
        if old is not None:
            self._bytes -= len(kb) + len(old[0]) + len(old[1]) + _ENTRY_OVERHEAD
        self._entries[kb] = (header, payload)
        self._bytes += len(kb) + len(header) + len(payload) + _ENTRY_OVERHEAD
        self.updates += 1
        while len(self._entries) > self._max_keys or self._bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            h, p = self._entries.pop(oldest)
            self._bytes -= len(oldest) + len(h) + len(p) + _ENTRY_OVERHEAD
            self.evicted += 1

    def matching(self, pattern: tuple[str, ...]) -> list[list[bytes]]:
        """Every cached ``[key, header, payload]`` whose key matches ``pattern``."""
        prefix = subscription_prefix(pattern)
        exact = "*" not in pattern
        out: list[list[bytes]] = []
        for kb, (header, payload) in self._entries.items():
            if not kb.startswith(prefix):
                continue
            if not exact:
                try:
                    key = decode_key(kb)
                except InvalidKeyError:  # cached under a wider prefix without decoding: drop it now
                    self.malformed += 1
                    continue
                if not matches(key, pattern):
                    continue
            out.append([kb, header, payload])
        return out

    def parts(self, request_id: str, pattern: tuple[str, ...]) -> list[dict[str, Any]]:
        """The reply to one snapshot request, split into parts of bounded size (at least one)."""
        self.snapshots += 1
        entries = self.matching(pattern)
        chunks: list[list[list[bytes]]] = [[]]
        size = 0
        for entry in entries:
            length = len(entry[0]) + len(entry[1]) + len(entry[2])
            if chunks[-1] and (len(chunks[-1]) >= _PART_ENTRIES or size + length > _PART_BYTES):
                chunks.append([])
                size = 0
            chunks[-1].append(entry)
            size += length
        return [
            {"id": request_id, "part": i, "parts": len(chunks), "entries": chunk}
            for i, chunk in enumerate(chunks)
        ]

    @property
    def patterns(self) -> tuple[tuple[str, ...], ...]:
        """The key patterns this cache keeps."""
        return self._patterns

    def statistics(self) -> CacheStatistics:
        """A snapshot of the counters."""
        return CacheStatistics(
            keys=len(self._entries),
            bytes=self._bytes,
            updates=self.updates,
            evicted=self.evicted,
            snapshots=self.snapshots,
            refused=self.refused,
            malformed=self.malformed,
        )


def parse_request(payload: Any) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """``(id, pattern, inbox key)`` of a snapshot request; ``ValueError`` when malformed."""
    if not isinstance(payload, dict):
        raise ValueError("snapshot request is not a map")
    rid, pattern, inbox = payload.get("id"), payload.get("pattern"), payload.get("inbox")
    if not isinstance(rid, str) or not rid:
        raise ValueError("snapshot request lacks a string 'id'")
    checked = []
    for name, value in (("pattern", pattern), ("inbox", inbox)):
        if not isinstance(value, list) or not value or not all(isinstance(s, str) and s for s in value):
            raise ValueError(f"snapshot request's {name!r} is not a non-empty list of strings")
        checked.append(tuple(validate(value, what=f"snapshot request's {name}")))  # no NUL inside
    if checked[1][:2] != INBOX:
        raise ValueError(f"snapshot inbox {inbox!r:.80} is not under {INBOX}")
    return rid, checked[0], checked[1]


class CacheThread:
    """Runs a :class:`LastValueCache` on its own thread and sockets inside the broker's context."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        *,
        frontend: str,
        backend: str,
        cache: LastValueCache,
        publisher_id: str,
    ) -> None:
        self.cache = cache
        self._publisher_id = publisher_id
        self._sub = ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 1_000_000)
        self._pub = ctx.socket(zmq.XPUB)  # an XPUB, to know that an inbox is subscribed before replying
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.SNDHWM, 100_000)
        self._pub.setsockopt(zmq.SNDTIMEO, 1000)
        self._pub.setsockopt(zmq.XPUB_NODROP, 1)
        for prefix in {*cache.prefixes(), encode_key(REQUEST)}:
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix)
        self._sub.connect(backend)
        self._pub.connect(frontend)
        self._wanted: set[bytes] = set()
        self._seqs: dict[bytes, int] = {}  # per inbox: sequences are per (publisher, key)
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._log = RateLimitedLog(interval=10.0)  # topics are kinds of event, never peer strings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="tickbus-broker-lvc", daemon=True)

    def start(self) -> None:
        """Start caching and answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; it closes its sockets (call before the context is terminated)."""
        self._stop.set()
        if self._thread.ident is None:  # never started: close here
            self._sub.close(linger=0)
            self._pub.close(linger=0)
            return
        self._thread.join(5.0)
        if self._thread.is_alive():
            logger.error("broker last-value cache thread did not stop; abandoning its sockets")

    def _main(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._pub, zmq.POLLIN)
        request = encode_key(REQUEST)
        store = self.cache.store
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                if self._pub in ready:
                    self._read_subscriptions()
                if self._sub not in ready:
                    continue
                for _ in range(10_000):
                    try:
                        frames = self._sub.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if len(frames) != 3:
                        continue  # the subscribers' own hubs count malformed traffic
                    try:
                        if frames[0] == request:
                            self._answer(frames[2])
                        else:
                            store(frames[0], frames[1], frames[2])
                    except Exception as exc:  # one message must never end the cache: count, go on
                        self.cache.malformed += 1
                        self._log.log(
                            "ERROR",
                            "lvc-failure",
                            "broker last-value cache dropped a message it could not handle: {}",
                            type(exc).__name__,
                            exception=exc,
                        )
        except Exception:
            logger.exception("broker last-value cache thread failed; snapshots are unavailable")
        finally:
            self._sub.close(linger=0)
            self._pub.close(linger=0)

    def _read_subscriptions(self) -> None:
        while True:
            try:
                msg = self._pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self._wanted.add(msg[1:])
            elif msg[:1] == b"\x00":
                self._wanted.discard(msg[1:])

    def _answer(self, raw: bytes) -> None:
        try:
            rid, pattern, inbox = parse_request(msgpack.unpackb(raw, raw=False))
        except Exception as exc:
            self.cache.refused += 1
            self.cache.malformed += 1
            self._log.warning(
                "lvc-bad-request", "broker last-value cache: refused a snapshot request: {}", exc
            )
            return
        inbox_kb = encode_key(inbox)
        parts: list[dict[str, Any]]
        if self.cache.covers(pattern):
            parts = self.cache.parts(rid, pattern)
        else:
            self.cache.refused += 1
            parts = [
                {"id": rid, "error": f"the broker caches {list(self.cache.patterns)}, not all of {pattern}"}
            ]
        deadline = time.monotonic() + 1.0  # the inbox subscription travels beside the request
        while inbox_kb not in self._wanted and time.monotonic() < deadline:
            if self._pub.poll(50):
                self._read_subscriptions()
        if inbox_kb not in self._wanted:
            self.cache.refused += 1
            self._log.warning(
                "lvc-inbox-unsubscribed",
                "broker last-value cache: nobody subscribes to inbox {!r:.80}; snapshot not sent",
                inbox,
            )
            return
        if len(self._seqs) > 100_000:
            self._seqs.clear()  # clients restart a stream they see from a new start without complaint
        for part in parts:
            seq = self._seqs[inbox_kb] = self._seqs.get(inbox_kb, 0) + 1
            header = encode_header(self._publisher_id, seq, time.monotonic_ns(), time.time_ns())
            try:
                self._pub.send_multipart([inbox_kb, header, self._pack(part)])
            except zmq.Again:
                self.cache.refused += 1
                self._log.warning(
                    "lvc-inbox-full",
                    "broker last-value cache: inbox {!r:.80} is not reading; snapshot abandoned",
                    inbox,
                )
                return
