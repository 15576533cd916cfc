"""The actor the chaos tier and the soak run start with ``tickbus run``: counts what it receives.

:class:`Counter` handles every ``('load', *)`` message and every 200 ms publishes its figures on
``('chaos', 'count', <actor name>)``: messages received per publisher id (from the payload's ``"p"``),
its hub's statistics, its own statistics (mailbox drops), sequence anomalies per publisher, the times
it resumed after a silence, and ``timeline`` (messages handled per 100 ms of ``time.monotonic()``).
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections import Counter as Tally
from typing import Any

from actors import Actor, Key, RemoteHub, every, handler

_SILENCE = 0.25  # seconds without a message after which the next one counts as a resume
_KEEP = 600  # timeline buckets (100 ms each) reported: the last minute, so a long soak stays small


def rss_kib(pid: int | None = None) -> int:
    """Resident set size of process ``pid`` (default: this one) in KiB, from /proc (0 if none)."""
    try:
        with open(f"/proc/{pid or os.getpid()}/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() // 1024
    except OSError:
        return 0


class Counter(Actor):
    """Counts ``('load', *)`` messages per publisher and reports its figures on the bus."""

    name = "counter"

    async def on_start(self) -> None:
        self.received: Tally[str] = Tally()
        self.timeline: Tally[int] = Tally()
        self.resumes: list[float] = []
        self.last = 0.0

    @handler(("load", "*"))
    def on_load(self, key: Key, payload: Any) -> None:
        now = time.monotonic()
        # the payload's publisher id; anything else (fuzz that happened to be valid) is counted as "?"
        publisher = payload.get("p") if isinstance(payload, dict) else None
        self.received[publisher if isinstance(publisher, str) else "?"] += 1
        self.timeline[int(now * 10)] += 1
        if self.last and now - self.last > _SILENCE:
            self.resumes.append(now)
        self.last = now

    @every(0.2)
    def report(self) -> None:
        hub = self.hub
        oldest = int(time.monotonic() * 10) - _KEEP
        for bucket in [b for b in self.timeline if b < oldest]:
            del self.timeline[bucket]
        anomalies = []
        if isinstance(hub, RemoteHub):
            anomalies = [dataclasses.asdict(p) for p in hub.sequence_tracker().publishers()]
        self.publish(
            ("chaos", "count", self.name),
            {
                "name": self.name,
                "pid": os.getpid(),
                "received": dict(self.received),
                "hub": dataclasses.asdict(hub.statistics()),
                "actor": dataclasses.asdict(self.statistics()),
                "publishers": anomalies,
                "resumes": self.resumes,
                "timeline": sorted(self.timeline.items()),
                "rss_kib": rss_kib(),
            },
        )
