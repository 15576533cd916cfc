"""Snapshot requests at the broker's last-value cache, socket-free: who may ask how often, which
requests wait for their inbox, and the reply being sent part by part.

Problem: anyone who can publish can ask the cache for a snapshot, naming any inbox and any requester
id. The cache used to wait (busy, up to 1 s) for an unread inbox's subscription, build each reply
in full and send it with a blocking send: a few requests an attacker sends each second stalled
every legitimate request and every cache update.

Approach, all bounded by configuration, never by what a peer sends:

- :class:`RequestGate`: a token bucket per requester *identity* (``name@host`` of the header's
  publisher id, so a restart gets no fresh allowance) in a table of at most ``max_requesters``
  buckets (least recently used evicted), behind one total bucket that made-up ids cannot get
  around. Refused requests are counted (``rate_limited``).
- :class:`PendingRequests`: a request whose inbox is not yet subscribed waits, at most
  ``max_pending`` of them, until its subscription arrives (answered then) or its deadline
  (dropped, counted as ``expired``). Nothing blocks while they wait.
- :class:`ReplyPlan`: the matching entries, split into parts up front (cheap: sizes only), each
  part's map built only when it is about to be sent.

Limits: the entries of a reply being sent are held by reference until it is sent or abandoned, so
values the cache evicts meanwhile live on until then (at most a few replies at a time).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from observability import TokenBucket

MAX_REQUEST_BYTES = 64 * 1024
"""A snapshot request (header and payload) larger than this is refused unread."""
_MAX_IDENTITY = 256  # characters of a requester id used as its bucket's key


class RequestGate:
    """Admits snapshot requests: per-requester token buckets (bounded table) and one total bucket."""

    __slots__ = ("_buckets", "_burst", "_max", "_rate", "_total", "limited")

    def __init__(self, *, rate: float, burst: int, total_rate: float, max_requesters: int) -> None:
        self._rate, self._burst, self._max = rate, float(burst), max_requesters
        self._buckets: dict[str, TokenBucket] = {}  # insertion order: least recently asking first
        self._total = TokenBucket(total_rate, max(1.0, total_rate))
        self.limited = 0

    def admit(self, requester: str, now: float) -> bool:
        """True when ``requester`` (an identity) may have a snapshot now; else counted in ``limited``."""
        key = requester[:_MAX_IDENTITY]
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            if len(self._buckets) >= self._max:
                del self._buckets[next(iter(self._buckets))]
            bucket = TokenBucket(self._rate, self._burst, now)
        self._buckets[key] = bucket
        # the requester's own bucket first: its refused requests must not spend the shared tokens
        if bucket.take(now) and self._total.take(now):
            return True
        self.limited += 1
        return False

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(slots=True, eq=False)
class Pending:
    """One admitted request: its id, pattern and inbox, and until when it may wait for the inbox."""

    rid: str
    pattern: tuple[str, ...]
    inbox: bytes  # the inbox's wire key
    deadline: float
    done: bool = field(default=False)


class PendingRequests:
    """Requests waiting for their inbox's subscription, at most ``max_pending``, each until its deadline."""

    __slots__ = ("_by_inbox", "_count", "_max", "_queue", "expired", "full")

    def __init__(self, max_pending: int) -> None:
        self._max = max_pending
        self._by_inbox: dict[bytes, list[Pending]] = {}
        self._queue: deque[Pending] = deque()  # arrival order, which is deadline order
        self._count = 0
        self.expired = self.full = 0

    def __len__(self) -> int:
        return self._count

    def add(self, request: Pending) -> bool:
        """Keep ``request`` until its inbox is subscribed; False (counted in ``full``) when at the bound."""
        if self._count >= self._max:
            self.full += 1
            return False
        self._by_inbox.setdefault(request.inbox, []).append(request)
        self._queue.append(request)
        self._count += 1
        return True

    def subscribed(self, inbox: bytes) -> list[Pending]:
        """The requests that were waiting for ``inbox``, which is subscribed now."""
        ready = self._by_inbox.pop(inbox, None)
        if not ready:
            return []
        for request in ready:
            request.done = True
        self._count -= len(ready)
        self._compact()
        return ready

    def expire(self, now: float) -> list[Pending]:
        """Drop (and count) the requests whose deadline passed; returns them."""
        queue, gone = self._queue, []
        while queue and (queue[0].done or queue[0].deadline <= now):
            request = queue.popleft()
            if request.done:
                continue
            request.done = True
            waiting = self._by_inbox[request.inbox]
            waiting.remove(request)
            if not waiting:
                del self._by_inbox[request.inbox]
            self._count -= 1
            self.expired += 1
            gone.append(request)
        return gone

    def next_deadline(self) -> float | None:
        """The earliest deadline of a waiting request, or None."""
        self._compact()
        return self._queue[0].deadline if self._queue else None

    def _compact(self) -> None:
        queue = self._queue
        while queue and queue[0].done:
            queue.popleft()
        if len(queue) > 2 * self._max + 16:  # answered requests stuck behind a waiting one
            self._queue = deque(r for r in queue if not r.done)


class ReplyPlan:
    """One reply on its way: the parts' boundaries known, each part's map built when it is sent."""

    __slots__ = ("_bounds", "_entries", "error", "inbox", "next", "progress", "rid")

    def __init__(
        self,
        rid: str,
        inbox: bytes,
        entries: list[list[bytes]],
        bounds: list[int],
        now: float,
        *,
        error: str | None = None,
    ) -> None:
        self.rid, self.inbox, self.error = rid, inbox, error
        self._entries, self._bounds = entries, bounds  # part i is entries[bounds[i]:bounds[i + 1]]
        self.next = 0
        self.progress = now  # when a part last left

    @classmethod
    def refusal(cls, rid: str, inbox: bytes, message: str, now: float) -> ReplyPlan:
        """A one-part reply ``{"id", "error"}`` saying why there is no snapshot."""
        return cls(rid, inbox, [], [0, 0], now, error=message)

    @property
    def parts(self) -> int:
        """How many parts the reply has."""
        return len(self._bounds) - 1

    @property
    def finished(self) -> bool:
        """True once every part was sent."""
        return self.next >= self.parts

    def part(self) -> dict[str, Any]:
        """The map of the next part to send (call :meth:`sent` once it left)."""
        i = self.next
        if self.error is not None:
            return {"id": self.rid, "error": self.error}
        return {
            "id": self.rid,
            "part": i,
            "parts": self.parts,
            "entries": self._entries[self._bounds[i] : self._bounds[i + 1]],
        }

    def sent(self, now: float) -> None:
        """The part :meth:`part` built has left."""
        self.next += 1
        self.progress = now


def split(entries: list[list[bytes]], max_entries: int, max_bytes: int) -> list[int]:
    """Part boundaries for ``entries``: at most ``max_entries``, about ``max_bytes`` a part; one at least."""
    bounds, size = [0], 0
    for i, entry in enumerate(entries):
        length = len(entry[0]) + len(entry[1]) + len(entry[2])
        if i > bounds[-1] and (i - bounds[-1] >= max_entries or size + length > max_bytes):
            bounds.append(i)
            size = 0
        size += length
    bounds.append(len(entries))
    return bounds
