"""Sequence tracking: gaps, duplicates and reordering per (publisher, key).

Problem: pub/sub is at-most-once, and a subscriber must know exactly how many messages it did not
get. A publisher numbers its messages, but a subscriber sees only the keys it subscribed to, so one
sequence per publisher would look full of holes.

Approach: sequences are per (publisher, key), starting at 1. For each stream the tracker keeps the
highest sequence seen and, after a jump, the numbers that were skipped (up to ``max_missing`` per
stream). A jump of n counts n gaps; a late arrival of a skipped number turns one gap into one
reordered message; anything else at or below the highest is a duplicate. The first message of a
stream is accepted whatever its number (a subscriber that joins late has not lost anything).

Untrusted numbers (without per-identity permissions, any peer can send a header under any
publisher id, see the README's "Limits and permissions"):

- **Memory is bounded by configuration**: at most ``max_streams`` streams (idle publishers go first,
  then the oldest streams; ``evicted`` counts them), ``max_publishers`` publisher ids (and as many
  ``name@host`` identities, to tell a restart), ``max_missing`` skipped numbers per stream and
  ``max_missing_total`` in all (the oldest sets go first). A stream evicted and seen again starts
  afresh, as a late joiner does. Each publisher's streams are indexed, so evicting publishers costs
  what it removes, never a scan of every stream (the index changes only when a stream is created or
  dropped: nothing per message).
- **A forged jump cannot deafen a stream**: every jump remembers where it started for
  ``rollback_window`` seconds. If the stream then goes on above that point with a number the jump
  skipped and the tracker did not hold as missing (the jump was longer than ``max_missing``), the jump
  was not the publisher's: its gaps are taken back, the stream follows the genuine numbers (counting
  what they skipped), and ``implausible`` counts it; a heartbeat reporting a latest number below the
  jump does the same. A real loss is never followed by one of its own numbers, so however long it is,
  it is counted exactly. A forged number within ``max_missing`` of the head turns the genuine numbers
  below it into reorderings and costs at most the one genuine message it collides with (a duplicate).

Other limits: a stream's first messages lost before any arrives are not counted (nothing tells us
they existed); skipped numbers beyond ``max_missing`` per stream are assumed lost for good, so a later
arrival of one counts as a duplicate.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from broker import publisher_identity


class Observation(IntEnum):
    """What one received sequence number meant."""

    IN_ORDER = 0
    FIRST = 1
    GAP = 2
    DUPLICATE = 3
    REORDERED = 4
    ROLLED_BACK = 5  # the stream went on from before a jump: the jump's gaps were taken back
    # only with several brokers (actors._redundancy); a frame so observed is not delivered
    REDUNDANT = 6  # another broker's copy of a message already delivered
    HELD = 7  # beyond a hole another broker may still fill: kept until its turn
    REPEATED = 8  # a number this broker already delivered: a replay or a forgery (a duplicate)


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


Stream = tuple[str, bytes]
_MAX_SEGMENTS = 8  # jumps soon after one another that one record takes back together


def restart_point(origin: int, runs: list[tuple[int, int]], seq: int) -> int:
    """Where a stream goes on from when ``seq`` refutes a jump that started at ``origin``: the last
    number received below ``seq`` (the ``runs`` received between the jumps of one record), or the
    origin. ``seq`` is in order from there, or a jump of its own."""
    return max((hi for _, hi in runs if hi < seq), default=origin)


class SequenceTracker:
    """Per (publisher, key) sequence bookkeeping; the fast path is one dict lookup."""

    inline = True  # Inbound may take the in-order case from :attr:`last` itself
    source = 0  # the broker a frame came from: one here (see actors._redundancy for several)

    def __init__(
        self,
        *,
        max_missing: int = 1024,
        max_streams: int = 100_000,
        max_missing_total: int = 65_536,
        max_publishers: int = 10_000,
        rollback_window: float = 60.0,
    ) -> None:
        self.last: dict[Stream, int] = {}
        self._missing: dict[Stream, set[int]] = {}  # skipped numbers, in order of the jumps
        self._missing_total = 0
        self._jumps: dict[Stream, list[Any]] = {}  # [origin, gaps since, time, reorders, head, runs received]
        self._anomalies: dict[str, _Anomalies] = {}
        self._seen: dict[str, float] = {}
        self._keys: dict[str, set[bytes]] = {}  # publisher -> the keys of its streams in `last`
        self._max_missing = max_missing
        self._max_streams = max_streams
        self._max_missing_total = max_missing_total
        self._max_publishers = max_publishers
        self._rollback_window = rollback_window
        self._identities: dict[str, str] = {}  # name@host -> its latest publisher id
        self.gaps = 0
        self.duplicates = 0
        self.reordered = 0
        self.implausible = 0  # jumps taken back because the stream went on from before them
        self.evicted = 0  # streams forgotten to stay within max_streams / max_publishers
        self.missing_dropped = 0  # skipped numbers forgotten to stay within max_missing(_total)
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

    def _slow(self, stream: Stream, last: int | None, seq: int) -> Observation:
        publisher = stream[0]
        now = time.monotonic()
        if last is None:
            self._admit(stream, now)
            self.last[stream] = seq
            return Observation.FIRST
        self._seen[publisher] = now
        anomalies = self._anomalies_of(publisher)
        if seq > last:
            return self._jump(stream, anomalies, last, seq, now)
        missing = self._missing.get(stream)
        if missing is not None and seq in missing:
            missing.discard(seq)
            self._missing_total -= 1
            anomalies.gaps -= 1
            anomalies.reordered += 1
            self.gaps -= 1
            self.reordered += 1
            jump = self._jumps.get(stream)
            if jump is not None:
                jump[1] -= 1
                jump[3] += 1
                if seq == jump[0] + 1:  # the jump's first number came after all: nothing to take back
                    del self._jumps[stream]
            return Observation.REORDERED
        jump = self._refuted(stream, seq, now)
        if jump is not None:
            # the stream goes on from below the jump, with numbers the jump skipped and nothing
            # held: the jump was not this publisher's
            self._roll_back(stream, jump, seq, now)
            return Observation.ROLLED_BACK
        anomalies.duplicates += 1
        self.duplicates += 1
        return Observation.DUPLICATE

    def _anomalies_of(self, publisher: str) -> _Anomalies:
        anomalies = self._anomalies.get(publisher)
        if anomalies is None:
            if len(self._anomalies) >= self._max_publishers:  # the oldest tenth of the statistics go
                for old in list(itertools.islice(self._anomalies, max(1, self._max_publishers // 10))):
                    del self._anomalies[old]
            anomalies = self._anomalies[publisher] = _Anomalies()
        return anomalies

    def _roll_back(
        self, stream: Stream, jump: list[Any], seq: int, now: float, *, count: bool = True
    ) -> None:
        """``seq`` refuted ``jump`` (see :meth:`_refuted`): take the jump back to the last number
        received below ``seq``; from there ``seq`` is in order, or a jump of its own, remembered like
        any other, so that a second forgery below the first cannot deafen the stream either."""
        base = restart_point(jump[0], jump[5], seq)
        self._take_back(stream, jump, base, count=count)
        if seq == base + 1:
            self.last[stream] = seq
        else:
            self._jump(stream, self._anomalies_of(stream[0]), base, seq, now)

    def _refuted(self, stream: Stream, seq: int, now: float) -> list[Any] | None:
        """The stream's jump record when ``seq`` (not held as missing) shows it was not the publisher's:
        a number the jump skipped, within ``rollback_window``, no reordering since. Else None."""
        jump = self._jumps.get(stream)
        if (
            jump is not None
            and jump[0] < seq < jump[4]
            and not jump[3]
            and now - jump[2] <= self._rollback_window
            and not any(lo <= seq <= hi for lo, hi in jump[5])
        ):
            return jump
        return None

    def _jump(self, stream: Stream, anomalies: _Anomalies, last: int, seq: int, now: float) -> Observation:
        self.last[stream] = seq
        skipped = seq - last - 1
        if skipped == 0:
            return Observation.IN_ORDER
        anomalies.gaps += skipped
        self.gaps += skipped
        self.last_gap = skipped
        jump = self._jumps.get(stream)
        if jump is None or now - jump[2] > self._rollback_window or len(jump[5]) >= _MAX_SEGMENTS:
            if jump is None and len(self._jumps) >= self._max_streams:
                del self._jumps[next(iter(self._jumps))]
            self._jumps[stream] = [last, skipped, now, 0, seq, []]
        else:  # another jump soon after: one record, with the run received in between
            jump[1] += skipped
            jump[5].append((jump[4], last))
            jump[4] = seq
        missing = self._missing.pop(stream, None)  # re-inserted last: dict order is jump order
        if missing is None:
            missing = set()
        before = len(missing)
        missing.update(range(max(last + 1, seq - self._max_missing), seq))
        if len(missing) > self._max_missing:
            for old in sorted(missing)[: len(missing) - self._max_missing]:
                missing.discard(old)
            self.missing_dropped += before + min(skipped, self._max_missing) - len(missing)
        self._missing_total += len(missing) - before
        self._missing[stream] = missing
        while self._missing_total > self._max_missing_total and len(self._missing) > 1:
            oldest = next(iter(self._missing))
            gone = self._missing.pop(oldest)
            self._missing_total -= len(gone)
            self.missing_dropped += len(gone)
        return Observation.GAP

    def _admit(self, stream: Stream, now: float) -> None:
        """A stream seen for the first time: make room for it within the configured bounds."""
        publisher = stream[0]
        if publisher not in self._seen:
            if len(self._seen) >= self._max_publishers:
                self._evict_publishers(now)
            self._new_publisher(publisher)
        self._seen[publisher] = now
        if len(self.last) >= self._max_streams:
            self._forget_idle(now)
            if len(self.last) >= self._max_streams:  # still full: the oldest tenth goes
                for old in list(itertools.islice(self.last, max(1, self._max_streams // 10))):
                    self._drop_stream(old)
                    self.evicted += 1
        keys = self._keys.get(publisher)
        if keys is None:
            keys = self._keys[publisher] = set()
        keys.add(stream[1])  # the caller adds the stream to `last` next

    def _evict_publishers(self, now: float) -> None:
        self._forget_idle(now)
        if len(self._seen) >= self._max_publishers:
            for publisher in list(itertools.islice(self._seen, max(1, self._max_publishers // 10))):
                self.evicted += self.forget(publisher)

    def _drop_stream(self, stream: Stream) -> None:
        del self.last[stream]
        keys = self._keys.get(stream[0])
        if keys is not None:
            keys.discard(stream[1])
            if not keys:
                del self._keys[stream[0]]
        self._jumps.pop(stream, None)
        missing = self._missing.pop(stream, None)
        if missing:
            self._missing_total -= len(missing)

    def _new_publisher(self, publisher: str) -> None:
        # A new id under a known name@host is that publisher restarted: a new incarnation, whose
        # streams start afresh (never a sequence error against the old one).
        identity = publisher_identity(publisher)
        previous = self._identities.pop(identity, None)  # re-inserted last: dict order is recency
        self._identities[identity] = publisher
        if previous is not None and previous != publisher:
            self.incarnations += 1
            self.last_incarnation = (previous, publisher)
        elif len(self._identities) > self._max_publishers:  # bounded: the least recently new goes
            del self._identities[next(iter(self._identities))]

    def catch_up(self, publisher: str, key: bytes, seq: int) -> int:
        """A publisher reported ``seq`` as its latest on ``key`` (a heartbeat): count what never came.

        Only streams already seen are checked (see the module's limits). A report below the head
        of a stream that jumped since (nothing arrived below the jump) takes the jump back: the
        publisher never sent it. Returns the gaps added.
        """
        stream = (publisher, key)
        last = self.last.get(stream)
        if last is None or seq == last:
            return 0
        if seq < last:
            jump = self._jumps.get(stream)
            if (
                jump is None
                or jump[3]
                or not jump[0] <= seq
                or time.monotonic() - jump[2] > self._rollback_window
            ):
                return 0
            self._take_back(stream, jump, seq)  # the publisher's own report is below the jump
            self.last[stream] = seq
            return self.last_gap
        # the same bookkeeping as a message numbered seq + 1 arriving, minus that message
        self._slow(stream, last, seq + 1)  # marks last+1 .. seq missing
        self.last[stream] = seq
        return self.last_gap

    def _take_back(self, stream: Stream, jump: list[Any], upto: int, *, count: bool = True) -> None:
        """Undo a jump: the stream went on from before it, so the publisher never sent it.

        The numbers after the jump's origin up to ``upto`` that were not received (outside the runs
        received between jumps) are counted as gaps instead; ``implausible`` counts it unless
        ``count`` is false (already counted).
        """
        del self._jumps[stream]
        origin = jump[0]
        received = sum(max(0, min(hi, upto) - max(lo, origin + 1) + 1) for lo, hi in jump[5])
        lost = max(0, upto - origin - received)
        anomalies = self._anomalies.get(stream[0])
        if anomalies is not None:
            anomalies.gaps += lost - jump[1]
        self.gaps += lost - jump[1]
        self.last_gap = lost
        if count:
            self.implausible += 1
        dropped = self._missing.pop(stream, None)
        if dropped:
            self._missing_total -= len(dropped)

    def publishers(self) -> list[PublisherStatistics]:
        """Anomaly counts per publisher that had any."""
        return [PublisherStatistics(p, a.gaps, a.duplicates, a.reordered) for p, a in self._anomalies.items()]

    def streams(self) -> int:
        """Number of (publisher, key) streams tracked."""
        return len(self.last)

    def missing(self) -> int:
        """Skipped numbers remembered (they turn into reorderings if they arrive late)."""
        return self._missing_total

    def forget(self, publisher: str) -> int:
        """Drop every stream of one publisher (e.g. after it announced its exit); returns how many.

        Costs what it removes: the publisher's keys are indexed (never a scan of every stream).
        """
        keys = self._keys.pop(publisher, ())
        for key in keys:
            self._drop_stream((publisher, key))
        self._seen.pop(publisher, None)
        return len(keys)

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
            self._drop_stream(stream)
        return len(doomed)

    def _forget_idle(self, now: float, idle_seconds: float = 300.0) -> None:
        cutoff = now - idle_seconds
        for publisher in [p for p, seen in self._seen.items() if seen < cutoff]:
            self.forget(publisher)
