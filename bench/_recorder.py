"""The subscriber side of a measurement: counts, times and (optionally) latencies of messages.

Every system's subscriber client calls :meth:`Recorder.on_message` with ``(seq, sent_ns)`` for each
message; the recorder is the same code for all systems, so its cost is the same for all.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any

from ._wire import END, PRIME

WARM_BASE = -(1 << 40)
"""Warm-up messages are numbered from here up: negative, never a marker."""
TAIL_BASE = -(1 << 41)
"""Tail probes (overload runs) are numbered from here up, below every warm-up number."""


class Recorder:
    """Counts measured messages (``seq >= 0``) and warm-up ones, reports priming, finishes on ``END``
    or on the first tail probe (``TAIL_BASE + i``, sent after an overload run's measured phase)."""

    def __init__(self, conn: Connection, *, latency: bool) -> None:
        self._conn = conn
        self.finished = asyncio.Event()
        self.reason = ""
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.other_ns = 0  # last time a non-measured message (probe, warm-up, end) arrived
        self.max_seq = -1
        self.out_of_order = 0
        self.primed = False
        self.warm_received = 0
        self.tail_index = -1  # the number of the first tail probe received (-1: none)
        self.latencies: list[int] | None = [] if latency else None
        self.hops: tuple[list[int], list[int]] | None = ([], []) if latency else None  # 3-hop: in, out
        self.first_cpu_ns = 0  # this process's CPU time (all threads) at the first measured message
        self.cpu_ns = 0  # ... and from there to the finish: what handling the measured messages cost

    def on_message(self, seq: int, sent_ns: int) -> None:
        """Record one received message."""
        now = time.monotonic_ns()
        if seq >= 0:
            if not self.count:
                # The window opens when the first measured message was *sent* (same host, same
                # clock), so a subscriber that queues internally (an actor's mailbox) and handles
                # late cannot shrink it: rate = messages handled / (last handled - first sent).
                self.first_ns = sent_ns if 0 < sent_ns <= now else now
                self.first_cpu_ns = time.process_time_ns()
            self.count += 1
            self.last_ns = now
            if seq > self.max_seq:
                self.max_seq = seq
            else:
                self.out_of_order += 1
            if self.latencies is not None:
                self.latencies.append(now - sent_ns)
            return
        self.other_ns = now
        if seq == END:
            self.finish("end marker")
        elif seq == PRIME:
            if not self.primed:
                self.primed = True
                self._conn.send(("primed", None))
        elif seq < WARM_BASE:
            # A tail probe: every message sent before it was handled or lost by now (one stream, in
            # order), so the system's loss counters are complete; probes 0..index-1 never arrived.
            if self.tail_index < 0:
                self.tail_index = seq - TAIL_BASE
            self.finish("tail probe")
        elif seq < END:
            self.warm_received += 1

    def on_signal(self, seq: int, sent_ns: int, via_ns: int) -> None:
        """Record one signal of the 3-hop pipeline: ``via_ns`` is when the model got its tick, so
        the two hops (feed -> model, model -> strategy) are kept apart as well."""
        if seq >= 0 and self.hops is not None:
            self.hops[0].append(via_ns - sent_ns)
            self.hops[1].append(time.monotonic_ns() - via_ns)
        self.on_message(seq, sent_ns)

    def finish(self, reason: str) -> None:
        """Stop the measurement (first reason wins)."""
        if not self.finished.is_set():
            self.reason = reason
            if self.count:
                self.cpu_ns = time.process_time_ns() - self.first_cpu_ns
            self.finished.set()

    def idle_ns(self) -> int:
        """Nanoseconds since the last message of any kind (0 before the first measured one)."""
        if not self.count:
            return 0
        return time.monotonic_ns() - max(self.last_ns, self.other_ns)

    def result(self) -> dict[str, Any]:
        """What the parent needs: counts, first/last receive times, latencies."""
        return {
            "received": self.count,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "max_seq": self.max_seq,
            "out_of_order": self.out_of_order,
            "warm_received": self.warm_received,
            "tail_index": self.tail_index,
            "finished_by": self.reason,
            "latencies_ns": self.latencies,
            "hops_ns": self.hops,
            "cpu_ns": self.cpu_ns,
        }
