"""A feed -> model -> strategy pipeline for the broker-pair tier, each actor in its own process.

- :class:`Feed` publishes ``('tick', 'S')`` at ``config['rate']`` msgs/s (paced by the clock, never
  more than it can), each payload ``{"n": count, "t": wall ns}``, until told ``('pair', 'stop')``.
- :class:`Model` turns each tick into ``('signal', 'S')`` with the same ``n`` and ``t``.
- :class:`Strategy` checks every signal arrives once, in order (``n`` one more than the last), and
  measures tick -> decision latency (``t`` to its handler) as a histogram per second of wall time
  (so a p99 over any run of seconds can be read off, to the bucket).

Each reports every 200 ms on ``('pair', 'report', <name>)``: its counts and its hub's statistics;
:class:`Reports` (in the test process) keeps the latest report of each, and :func:`p99_over` reads
the strategy's latency histograms over a span of wall time.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import math
import os
import time
from typing import Any

import actors
from actors import Actor, ClientCurve, Key, every, handler

TICK, SIGNAL = Key("tick", "S"), Key("signal", "S")


def _report(actor: Actor, extra: dict[str, Any]) -> None:
    actor.publish(
        ("pair", "report", actor.name),
        {"name": actor.name, "pid": os.getpid(), "hub": dataclasses.asdict(actor.hub.statistics()), **extra},
    )


class Feed(Actor):
    name = "feed"

    async def on_start(self) -> None:
        self.sent = 0
        self.halted = False

    @handler(("pair", "stop"))
    def on_stop_request(self, key: Key, payload: Any) -> None:
        self.halted = True

    async def run(self) -> None:
        rate = float(self.config.get("rate", 10_000))
        start = time.monotonic()
        while not self.halted:
            due = int((time.monotonic() - start) * rate)
            for _ in range(min(due - self.sent, 200)):  # a late loop catches up in bounded bursts
                self.sent += 1
                self.publish(TICK, {"n": self.sent, "t": time.time_ns()})
            await asyncio.sleep(0.001)
        await asyncio.Event().wait()  # halted: idle until the process is stopped

    @every(0.2)
    def report(self) -> None:
        _report(self, {"sent": self.sent, "done": self.halted})


class Model(Actor):
    name = "model"

    async def on_start(self) -> None:
        self.handled = 0

    @handler(("tick", "*"))
    def on_tick(self, key: Key, payload: Any) -> None:
        self.handled += 1
        self.publish(SIGNAL, payload)

    @every(0.2)
    def report(self) -> None:
        _report(self, {"handled": self.handled})


# latency bucket upper bounds, microseconds (the last catches everything above)
BOUNDS_US = (
    100,
    200,
    300,
    500,
    700,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    7_000,
    10_000,
    20_000,
    50_000,
    10**12,
)


def p99_bound(counts: list[int]) -> int:
    """The upper bound (us) of the bucket holding the 99th percentile of a histogram over BOUNDS_US."""
    total = sum(counts)
    rank = math.ceil(total * 0.99)
    seen = 0
    for bound, count in zip(BOUNDS_US, counts, strict=True):
        seen += count
        if seen >= rank:
            return bound
    return BOUNDS_US[-1]


class Strategy(Actor):
    name = "strategy"

    async def on_start(self) -> None:
        self.handled = self.out_of_order = self.repeated = 0
        self.last = 0
        self.seconds: dict[int, list[int]] = {}  # wall second -> latency histogram over BOUNDS_US

    @handler(("signal", "*"))
    def on_signal(self, key: Key, payload: Any) -> None:
        now = time.time_ns()
        n = payload["n"]
        if n <= self.last:
            self.repeated += 1  # a message delivered twice to this handler
        elif n != self.last + 1 and self.last:
            self.out_of_order += n - self.last - 1  # skipped numbers (lost, or coming later)
        self.last = max(self.last, n)
        self.handled += 1
        second = now // 1_000_000_000
        counts = self.seconds.get(second)
        if counts is None:
            counts = self.seconds[second] = [0] * len(BOUNDS_US)
        counts[bisect.bisect_left(BOUNDS_US, (now - payload["t"]) // 1000)] += 1

    @every(0.2)
    def report(self) -> None:
        _report(
            self,
            {
                "handled": self.handled,
                "last": self.last,
                "out_of_order": self.out_of_order,
                "repeated": self.repeated,
                "seconds": {str(s): c for s, c in sorted(self.seconds.items())[-120:]},
            },
        )


def p99_over(seconds: dict[str, list[int]], start: float, end: float) -> tuple[int, int]:
    """(p99 bucket bound in us, messages) over the wall seconds in [start, end)."""
    total = [0] * len(BOUNDS_US)
    for second, counts in seconds.items():
        if start <= int(second) < end:
            total = [a + b for a, b in zip(total, counts, strict=True)]
    return p99_bound(total), sum(total)


class Reports:
    """The latest report of each pipeline actor, through a hub connected to every broker (test side)."""

    def __init__(self, hub: actors.RemoteHub) -> None:
        self.hub = hub
        self.latest: dict[str, dict[str, Any]] = {}
        hub.add_subscriber(("pair", "report", "*"), self._on_report)

    def _on_report(self, key: Key, payload: Any, header: object) -> None:
        self.latest[payload["name"]] = payload

    @classmethod
    async def connect(
        cls, frontends: list[str], backends: list[str], curve: ClientCurve | None = None
    ) -> Reports:
        hub = await actors.connect(frontends, backends, name="observer", idle_heartbeat=0, curve=curve)
        reports = cls(hub)
        await hub.sync()
        return reports

    def get(self, name: str, field: str, default: Any = 0) -> Any:
        return self.latest.get(name, {}).get(field, default)

    def hubs(self, names: tuple[str, ...], field: str) -> list[Any]:
        """``field`` of each named actor's hub statistics (None before its first report)."""
        return [self.get(name, "hub", {}).get(field) for name in names]


def assert_each_tick_once(
    procs: dict[str, Any], model: dict[str, Any], strategy: dict[str, Any], sent: int
) -> None:
    """The pipeline's verdict (test side): every process alive, every tick handled once and in order by
    the model and the strategy, no gap and no duplicate at either hub."""
    for name, proc in procs.items():
        assert proc.proc.poll() is None, f"{name} died:\n{proc.log()[-2000:]}"
    assert model["handled"] == sent, "the model handled every tick once"
    assert strategy["handled"] == sent, "the strategy handled every signal once"
    assert strategy["repeated"] == strategy["out_of_order"] == 0, "once each, in order"
    for report in (model, strategy):
        assert report["hub"]["gaps"] == 0, report["hub"]
        assert report["hub"]["duplicates"] == 0, report["hub"]
