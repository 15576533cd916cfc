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

Hostile requests cannot stall it (``broker._lvc_requests``): requests are admitted per requester
and in total by token buckets, a request whose inbox is not subscribed yet waits (bounded in number,
each until ``lvc_inbox_wait``) while everything else goes on, and replies leave part by part with
non-blocking sends into a queue of at most ``lvc_send_hwm`` parts; a reply that cannot make progress
for a second is abandoned. Every refusal is counted in :class:`CacheStatistics`.

If this thread falls behind, its queue overflows and the cache holds older values for a while: the
gap is counted in ``dropped`` (from the sequence numbers it sees), and a snapshot is never older
than what the cache acknowledged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from observability import InvalidKeyError

from ._keys import decode_key, matches, subscription_prefix, validate
from ._lvc_requests import ReplyPlan, split
from ._reserved import LVC_INBOX as INBOX

_PART_ENTRIES = 512
_PART_BYTES = 512 * 1024  # under a hub's default max_payload (1 MiB) with room for the envelope
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
    pending: int = 0  # requests waiting now for their inbox's subscription (at most lvc_max_pending)
    expired: int = 0  # requests dropped because their inbox was not subscribed within lvc_inbox_wait
    pending_full: int = 0  # requests refused because lvc_max_pending requests were waiting already
    rate_limited: int = 0  # requests refused by the per-requester or the total rate limit
    abandoned: int = 0  # replies given up because the send queue stayed full (or an inbox vanished)
    sending: int = 0  # replies on their way now
    requesters: int = 0  # requesters with a rate bucket now (at most lvc_max_requesters)
    restarts: int = 0  # turns of the cache thread that failed on a bug (logged; the thread goes on)

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict (in the broker's statistics message, under ``lvc``)."""
        return {f: getattr(self, f) for f in self.__slots__}


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

    def plan(self, request_id: str, pattern: tuple[str, ...], inbox: bytes, now: float) -> ReplyPlan:
        """The reply to one snapshot request, split into parts of bounded size (at least one)."""
        self.snapshots += 1
        entries = self.matching(pattern)
        return ReplyPlan(request_id, inbox, entries, split(entries, _PART_ENTRIES, _PART_BYTES), now)

    def parts(self, request_id: str, pattern: tuple[str, ...]) -> list[dict[str, Any]]:
        """Every part of the reply to one snapshot request at once (see :meth:`plan`)."""
        plan = self.plan(request_id, pattern, b"", 0.0)
        out = []
        while not plan.finished:
            out.append(plan.part())
            plan.sent(0.0)
        return out

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
