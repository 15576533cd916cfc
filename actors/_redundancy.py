"""Sequence tracking for a hub connected to several brokers: each message once, in order.

Problem: a publisher connected to brokers A and B sends every message through both, so a
subscriber receives each (publisher, key, seq) up to once per broker. It must deliver each message
once, in order per stream, count the second copy as *redundant* (not as a duplicate, which would
be an anomaly), still tell a replayed or forged number from a redundant copy, and count a gap only
when no broker brought the message.

Approach: each broker delivers a publisher's messages in order (one TCP connection each way, and
the broker forwards in order), possibly with holes where it dropped some. Per source (broker) the
tracker keeps the highest number that source delivered on each stream; per stream, as the plain
:class:`~actors._sequence.SequenceTracker` does, the highest number delivered to handlers. A frame
from source ``s`` numbered ``n`` is:

- **repeated** when ``s`` already delivered ``n`` or a later number on that stream: that broker
  cannot send a number twice, so it is a replay or a forgery (counted with ``duplicates``, dropped);
- **redundant** when another broker delivered ``n`` first (counted, dropped): the normal case for
  every second copy, ``published x (brokers - 1)`` of them with every broker up;
- **in order** when ``n`` is the next number: delivered;
- **held** when it is beyond the next number and a live broker that has not yet passed the missing
  numbers may still bring them: kept, in order, for at most ``reorder_window`` seconds (then the
  missing numbers are gaps and the held messages go on in order). When every live broker has passed
  the missing numbers, they are gaps at once.

The window is the latency a message pays only when the broker that brought it first lost its
predecessor while the other broker has not brought it yet: keep it above the difference between the
two brokers' paths (well under a millisecond on one LAN) and below the latency budget. Holding needs
no timer here: the hub calls :meth:`RedundantTracker.take_ready` after reading and when the window
of the oldest hold ends. First-copy-wins also keeps a publisher's order across keys while no
broker drops: each broker is in order, so the earlier of two copies is.

Untrusted numbers: memory is bounded by configuration (per source the same ``max_streams`` as the
stream table, for its numbers and for its jumps, at most ``max_held`` held frames in all, plus those
of one read: when full, every window ends at once and a frame waits only behind its own stream's
holds, ``hold_overflows``). A frame behind a stream's holds is held too, whatever the other brokers
did: order per stream.

A forged jump (a real publisher's id, its sequence + 10⁶, through one broker or all) costs what it
costs on one broker (see :mod:`actors._sequence`): each broker's numbers follow the single-broker
rule. A jump on one broker remembers where it started for ``rollback_window`` seconds; when that
broker then brings a number the jump skipped (outside the runs it brought since), the jump was not
the publisher's: that broker's number goes back, the frames it brought above it that are still held
are dropped (counted with ``duplicates``), and ``implausible`` counts it (``implausible_by_source``:
a forgery sent through two brokers is two). A heartbeat reporting a number below such a jump does
the same. Once no live broker stands behind the merged stream's head any more, the merged stream's
jump is taken back as on one broker (not counted again): the frame that showed it is delivered and
the stream goes on from there.

Pure logic: no sockets, no asyncio; the caller says which source a frame came from
(:attr:`RedundantTracker.source`) and what time it is.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from ._sequence import _MAX_SEGMENTS, Observation, SequenceTracker, Stream, restart_point

DEFAULT_REORDER_WINDOW = 0.005  # seconds a message behind a hole waits for another broker's copy
DEFAULT_MAX_HELD = 10_000  # frames held in all while waiting


class RedundantTracker(SequenceTracker):
    """A :class:`SequenceTracker` over the merged stream of ``sources`` brokers (see the module)."""

    inline = False  # Inbound must call observe for every message: each one updates a source's table

    def __init__(
        self,
        sources: int,
        *,
        reorder_window: float = DEFAULT_REORDER_WINDOW,
        max_held: int = DEFAULT_MAX_HELD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if sources < 2:
            raise ValueError(f"a redundant tracker needs at least 2 sources, got {sources}")
        if reorder_window < 0:
            raise ValueError(f"reorder_window must be >= 0, got {reorder_window}")
        self.sources = sources
        self.reorder_window = reorder_window
        self.max_held = max_held
        self.source = 0  # the broker the frame being observed came from (set by the reader)
        self.releasing = False  # observing a frame taken back from the holds (take_ready)
        self.up = [True] * sources  # brokers with a live connection (set by the hub)
        self._from: list[dict[Stream, int]] = [{} for _ in range(sources)]
        self._held: dict[Stream, list[list[Any]]] = {}  # stream -> [[seq, source, deadline, frame]]
        self._hold: list[Any] | None = None  # the hold made by the last observe, waiting for its frame
        self.held = 0  # frames held now
        self.holds = 0  # holds made
        self.hold_overflows = 0  # holds not made because max_held frames were held
        self.redundant = 0
        self.redundant_by_source = [0] * sources
        self.missed_by_source = [0] * sources  # numbers a broker skipped (another may have brought them)
        self.repeated_by_source = [0] * sources  # numbers a broker sent again (replays, forgeries)
        self.implausible_by_source = [0] * sources  # a broker's jumps taken back (counted in implausible)
        # per source, stream -> [origin, head, time, runs brought since]: its jumps (see the module)
        self._jumped: list[dict[Stream, list[Any]]] = [{} for _ in range(sources)]

    def observe(self, publisher: str, key: bytes, seq: int) -> Observation:
        """Record one (publisher, key, seq) from :attr:`source`; return what it meant (see the module)."""
        stream = (publisher, key)
        source = self.source
        refuted = False  # this broker's jump was just taken back: the merged head may be forged
        if not self.releasing:
            own = self._from[source]
            previous = own.get(stream)
            if previous is not None:
                if seq <= previous:
                    if not self._refute(source, stream, seq, time.monotonic()):
                        self.repeated_by_source[source] += 1
                        self.duplicates += 1
                        return Observation.REPEATED
                    refuted = True
                elif seq > previous + 1:
                    self.missed_by_source[source] += seq - previous - 1
                    self._source_jump(source, stream, previous, seq)
            elif len(own) >= self._max_streams:
                for old in list(itertools.islice(own, max(1, self._max_streams // 10))):
                    del own[old]
            own[stream] = seq
        last = self.last.get(stream)
        if last is not None:
            if seq == last + 1:
                self.last[stream] = seq
                return Observation.IN_ORDER
            if seq <= last:
                missing = self._missing.get(stream)
                if missing is None or seq not in missing:
                    return self._delivered_before(stream, seq, source, refuted)
            elif not self.releasing and (
                queue := self._held.get(stream) or self._may_come(stream, seq - 1, source)
            ):
                deadline = time.monotonic() + self.reorder_window
                if self.held >= self.max_held:
                    # full: every window ends now (the hub releases them after this read), and
                    # this frame waits only behind its own stream's holds, to keep the order
                    self.hold_overflows += 1
                    for entries in self._held.values():
                        for entry in entries:
                            entry[2] = 0.0
                    if not isinstance(queue, list):
                        return self._slow(stream, last, seq)
                    deadline = 0.0
                self._hold = [seq, source, deadline, None]
                self._held.setdefault(stream, []).append(self._hold)
                self.held += 1
                self.holds += 1
                return Observation.HELD
        return self._slow(stream, last, seq)

    def _source_jump(self, source: int, stream: Stream, previous: int, head: int) -> None:
        """``source`` skipped from ``previous`` to ``head``: remember where it started, as
        :meth:`SequenceTracker._jump` does (jumps soon after one another make one record)."""
        now = time.monotonic()
        jumped = self._jumped[source]
        record = jumped.get(stream)
        if record is None or now - record[2] > self._rollback_window or len(record[3]) >= _MAX_SEGMENTS:
            if record is None and len(jumped) >= self._max_streams:
                del jumped[next(iter(jumped))]
            jumped[stream] = [previous, head, now, []]
        else:  # another jump soon after: one record, with the run brought in between
            record[3].append((record[1], previous))
            record[1] = head

    def _refute(self, source: int, stream: Stream, seq: int, now: float, *, report: bool = False) -> bool:
        """``source`` brings ``seq`` (or, ``report``, its heartbeat says ``seq`` is the latest), at
        or below the last number it brought. True, with its last number set back to ``seq``, when
        its last jump skipped that number (the single-broker rule): the jump was not the publisher's.
        The frames it brought above ``seq`` and still held are dropped (counted with ``duplicates``)."""
        jumped = self._jumped[source]
        record = jumped.get(stream)
        if (
            record is None
            or not record[0] + (0 if report else 1) <= seq < record[1]
            or now - record[2] > self._rollback_window
            or any(lo <= seq <= hi for lo, hi in record[3])
        ):
            return False
        base = restart_point(record[0], record[3], seq)
        if seq > base + 1:  # itself a skip from the last number it brought: a jump of its own
            jumped[stream] = [base, seq, now, []]
        else:
            del jumped[stream]
        self._from[source][stream] = seq
        self.implausible += 1
        self.implausible_by_source[source] += 1
        entries = self._held.get(stream)
        if entries:
            keep = [entry for entry in entries if entry[1] != source or entry[0] <= seq]
            dropped = len(entries) - len(keep)
            if dropped:
                self.held -= dropped
                self.duplicates += dropped
                self.repeated_by_source[source] += dropped
                if keep:
                    entries[:] = keep
                else:
                    del self._held[stream]
        return True

    def _delivered_before(self, stream: Stream, seq: int, source: int, refuted: bool) -> Observation:
        """A number at or below the stream's head and not missing: another broker's copy of one
        delivered (``REDUNDANT``), unless ``source`` just took its jump back and the merged head
        turns out forged too (``ROLLED_BACK``, delivered: see :meth:`_unvouched`)."""
        if refuted and self._unvouched(stream, seq, source):
            self.last[stream] = seq
            return Observation.ROLLED_BACK
        self.redundant += 1
        self.redundant_by_source[source] += 1
        return Observation.REDUNDANT

    def _unvouched(self, stream: Stream, seq: int, source: int) -> bool:
        """After ``source``'s jump was taken back: when no live broker has brought the merged head
        any more, take the merged jump back as on one broker (already counted). True when ``seq``
        is one the jump skipped (deliver it, the stream goes on from it); else the stream goes on
        from where the jump started and ``seq`` is another copy of a number delivered."""
        last = self.last[stream]
        for other, own in enumerate(self._from):
            if (other == source or self.up[other]) and own.get(stream, 0) >= last:
                return False  # a live broker still stands behind the head
        now = time.monotonic()
        jump = self._refuted(stream, seq, now)
        if jump is not None:
            self._roll_back(stream, jump, seq, now, count=False)
            return True
        jump = self._jumps.get(stream)
        if jump is not None and not jump[3] and now - jump[2] <= self._rollback_window:
            before = jump[5][-1][1] if jump[5] else jump[0]  # the last number delivered before it
            self._take_back(stream, jump, before, count=False)
            self.last[stream] = before
        return False

    def next_copy(self, stream: Stream, seq: int) -> int:
        """:meth:`observe`'s two common cases, for the hub's inline reader: a frame from
        :attr:`source` carrying the number after the last this source brought, which is either the
        stream's next (``IN_ORDER``, recorded) or one another broker delivered first (``REDUNDANT``,
        counted). Anything else returns -1 having changed nothing: then call :meth:`observe`."""
        if self.releasing:
            return -1
        own = self._from[self.source]
        previous = own.get(stream)
        last = self.last.get(stream)
        if previous is None or seq != previous + 1 or last is None:
            return -1
        if seq == last + 1:
            own[stream] = seq
            self.last[stream] = seq
            return Observation.IN_ORDER
        if seq <= last:
            missing = self._missing.get(stream)
            if missing is None or seq not in missing:
                own[stream] = seq
                self.redundant += 1
                self.redundant_by_source[self.source] += 1
                return Observation.REDUNDANT
        return -1

    def attach(self, frame: bytes) -> None:
        """The frame of the hold the last :meth:`observe` made (it returned ``HELD``)."""
        if self._hold is not None:
            self._hold[3] = frame
            self._hold = None

    def _may_come(self, stream: Stream, upto: int, source: int) -> bool:
        """True when a live broker other than ``source`` has not passed ``upto`` on ``stream`` yet."""
        for other in range(self.sources):
            if other != source and self.up[other]:
                passed = self._from[other].get(stream)
                if passed is None or passed < upto:
                    return True
        return False

    def take_ready(self, now: float) -> list[tuple[int, bytes]]:
        """Held frames whose turn came, as (source, frame) in order per stream, removed from the holds.

        A frame's turn comes when its predecessor arrived, when its window ended, or when no live
        broker can bring the missing numbers any more. Observe each again with :attr:`releasing` set
        (and :attr:`source` its source): it is then in order, redundant, or a gap counted.
        """
        ready: list[tuple[int, bytes]] = []
        for stream in list(self._held):
            entries = self._held[stream]
            entries.sort(key=lambda e: e[0])
            last = self.last.get(stream, 0)
            taken = 0
            for seq, source, deadline, frame in entries:
                if seq > last + 1 and deadline > now and self._may_come(stream, seq - 1, source):
                    break
                taken += 1
                last = max(last, seq)
                if frame is not None:
                    ready.append((source, frame))
            if taken:
                self.held -= taken
                if taken == len(entries):
                    del self._held[stream]
                else:
                    del entries[:taken]
        return ready

    def next_deadline(self) -> float | None:
        """When the oldest hold's window ends (``time.monotonic()``), None when nothing is held."""
        if not self.held:
            return None
        return float(min(entries[0][2] for entries in self._held.values()))

    def catch_up(self, publisher: str, key: bytes, seq: int) -> int:
        """A heartbeat from :attr:`source` reports ``seq`` as the latest: that broker has passed it.

        What never came is counted only once no other live broker can still bring it.
        """
        stream = (publisher, key)
        source = self.source
        refuted = False
        if stream in self.last:
            own = self._from[source]
            previous = own.get(stream)
            if (0 if previous is None else previous) < seq:
                own[stream] = seq
                if previous is not None and seq > previous + 1:  # previous+1 .. seq-1 skipped
                    self._source_jump(source, stream, previous, seq)
            elif previous is not None and seq < previous:  # below this broker's jump: as on one broker
                refuted = self._refute(source, stream, seq, time.monotonic(), report=True)
        if self._may_come(stream, seq, source):
            return 0
        counted = self.implausible
        lost = super().catch_up(publisher, key, seq)
        if refuted:
            self.implausible = counted  # the merged stream's take-back is the same forgery
        return lost

    def _drop_stream(self, stream: Stream) -> None:
        super()._drop_stream(stream)
        for own in self._from:
            own.pop(stream, None)
        for jumped in self._jumped:
            jumped.pop(stream, None)
        entries = self._held.pop(stream, None)
        if entries:
            self.held -= len(entries)
