"""Sequence tracking: gaps, duplicates and reordering per (publisher, key).

Problem: pub/sub is at-most-once, and a subscriber must know exactly how many messages it did not
get. A publisher numbers its messages, but a subscriber sees only the keys it subscribed to, so one
sequence per publisher would look full of holes.

Approach: sequences are per (publisher, key), starting at 1. For each stream the tracker keeps the
highest sequence seen and, after a jump, the numbers that were skipped (up to ``max_missing`` per
stream). A jump of n counts n gaps; a late arrival of a skipped number turns one gap into one
reordered message; anything else at or below the highest is a duplicate. The first message of a
stream is accepted whatever its number (a subscriber that joins late has not lost anything).

Limits: a stream's first messages lost before any arrives are not counted (nothing tells us they
existed); skipped numbers beyond ``max_missing`` per stream are assumed lost for good, so a later
arrival of one counts as a duplicate. Streams of publishers not heard from for ``idle_seconds``
are forgotten when the table passes ``max_streams``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum

from broker import publisher_identity


class Observation(IntEnum):
    """What one received sequence number meant."""

    IN_ORDER = 0
    FIRST = 1
    GAP = 2
    DUPLICATE = 3
    REORDERED = 4


@dataclass(frozen=True)
class PublisherStatistics:
    """Anomalies seen from one publisher incarnation."""

    publisher: str
    gaps: int
    duplicates: int
    reordered: int


@dataclass
class _Anomalies:
    gaps: int = 0
    duplicates: int = 0
    reordered: int = 0
    missing: dict[bytes, set[int]] = field(default_factory=dict)


class SequenceTracker:
    """Per (publisher, key) sequence bookkeeping; the fast path is one dict lookup."""

    def __init__(self, *, max_missing: int = 1024, max_streams: int = 1_000_000) -> None:
        self.last: dict[tuple[str, bytes], int] = {}
        self._anomalies: dict[str, _Anomalies] = {}
        self._seen: dict[str, float] = {}
        self._max_missing = max_missing
        self._max_streams = max_streams
        self._identities: dict[str, str] = {}  # name@host -> its latest publisher id
        self.gaps = 0
        self.duplicates = 0
        self.reordered = 0
        self.last_gap = 0
        self.incarnations = 0
        self.last_incarnation: tuple[str, str] | None = None  # (previous id, new id)

    def observe(self, publisher: str, key: bytes, seq: int) -> Observation:
        """Record one received (publisher, key, seq); return what it meant.

        After a GAP, ``last_gap`` holds how many messages were skipped.
        """
        stream = (publisher, key)
        last = self.last.get(stream)
        if last is not None and seq == last + 1:
            self.last[stream] = seq
            return Observation.IN_ORDER
        return self._slow(stream, last, seq)

    def _slow(self, stream: tuple[str, bytes], last: int | None, seq: int) -> Observation:
        publisher, key = stream
        if last is None:
            if publisher not in self._seen:
                self._new_publisher(publisher)
                if len(self.last) >= self._max_streams:
                    self._forget_idle()
            self._seen[publisher] = time.monotonic()
            self.last[stream] = seq
            return Observation.FIRST
        anomalies = self._anomalies.get(publisher)
        if anomalies is None:
            anomalies = self._anomalies[publisher] = _Anomalies()
        self._seen[publisher] = time.monotonic()
        if seq > last:
            skipped = seq - last - 1
            self.last[stream] = seq
            anomalies.gaps += skipped
            self.gaps += skipped
            self.last_gap = skipped
            missing = anomalies.missing.setdefault(key, set())
            missing.update(range(max(last + 1, seq - self._max_missing), seq))
            if len(missing) > self._max_missing:
                for old in sorted(missing)[: len(missing) - self._max_missing]:
                    missing.discard(old)
            return Observation.GAP
        missing_for_key = anomalies.missing.get(key)
        if missing_for_key is not None and seq in missing_for_key:
            missing_for_key.discard(seq)
            anomalies.gaps -= 1
            anomalies.reordered += 1
            self.gaps -= 1
            self.reordered += 1
            return Observation.REORDERED
        anomalies.duplicates += 1
        self.duplicates += 1
        return Observation.DUPLICATE

    def _new_publisher(self, publisher: str) -> None:
        # A new id under a known name@host is that publisher restarted: a new incarnation, whose
        # streams start afresh (never a sequence error against the old one).
        identity = publisher_identity(publisher)
        previous = self._identities.get(identity)
        self._identities[identity] = publisher
        if previous is not None and previous != publisher:
            self.incarnations += 1
            self.last_incarnation = (previous, publisher)

    def catch_up(self, publisher: str, key: bytes, seq: int) -> int:
        """A publisher reported ``seq`` as its latest on ``key`` (a heartbeat): count what never came.

        Only streams already seen are checked (see the module's limits). Returns the gaps added.
        """
        stream = (publisher, key)
        last = self.last.get(stream)
        if last is None or seq <= last:
            return 0
        # the same bookkeeping as a message numbered seq + 1 arriving, minus that message
        self._slow(stream, last, seq + 1)  # marks last+1 .. seq missing
        self.last[stream] = seq
        return self.last_gap

    def publishers(self) -> list[PublisherStatistics]:
        """Anomaly counts per publisher that had any."""
        return [PublisherStatistics(p, a.gaps, a.duplicates, a.reordered) for p, a in self._anomalies.items()]

    def streams(self) -> int:
        """Number of (publisher, key) streams tracked."""
        return len(self.last)

    def forget(self, publisher: str) -> None:
        """Drop every stream of one publisher (e.g. after it announced its exit)."""
        for stream in [s for s in self.last if s[0] == publisher]:
            del self.last[stream]
        self._seen.pop(publisher, None)

    def forget_prefix(self, prefix: bytes, still_wanted: tuple[bytes, ...] = ()) -> int:
        """Forget every stream whose wire key starts with ``prefix`` and no ``still_wanted`` prefix.

        Called when a subscription goes away: what is published while nobody here listens is not
        a gap, so a later re-subscription starts its streams afresh. Returns how many were dropped.
        """
        doomed = [
            stream
            for stream in self.last
            if stream[1].startswith(prefix) and not any(stream[1].startswith(p) for p in still_wanted)
        ]
        for stream in doomed:
            del self.last[stream]
            anomalies = self._anomalies.get(stream[0])
            if anomalies is not None:
                anomalies.missing.pop(stream[1], None)
        return len(doomed)

    def _forget_idle(self, idle_seconds: float = 300.0) -> None:
        cutoff = time.monotonic() - idle_seconds
        for publisher in [p for p, seen in self._seen.items() if seen < cutoff]:
            self.forget(publisher)
