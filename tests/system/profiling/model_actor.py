"""A model actor whose functions can be made costlier (or refactored) at run time, for detection tests.

Each ``('tick', *)`` message runs ``compute_features``, ``score_signal`` and the small ``check_limits``
(~6 % of the samples) for a fixed number of loop
iterations (work, not time: CPU mode measures CPU, and a loaded machine must not change the cost).
``('control', 'slow')`` with ``{"function": name, "factor": 1.2}`` makes one of them costlier;
``('control', 'refactor')`` moves ``compute_features``'s work into a new callee, ``features_kernel``
(``{"on": false}`` moves it back). ``('control', 'drive')`` with ``{"rate": r}`` makes it tick itself r
times a second (no driver process, no broker traffic: the least contention for the sampler). An ask of
``('control', 'sync')`` is answered once everything queued before it was handled (asks wait in the
same mailbox as messages), with the model's state: a test knows a switch took effect, whatever backlog
a slow machine built up. The state includes the model's own clock of each function (``spent``: the
nanoseconds spent in each since start, ``calls``: ticks handled), a measure of their costs that does
not come from the sampler.

The work per call varies at random (uniformly within +-30 %): a strictly periodic workload beats with
the sampler's fixed interval and shifts samples between the two functions for many windows in a row,
which is an artefact of sampling, not a cost change.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from actors import Actor, Key, answers, handler

FEATURES_ITERATIONS = 9_000
SCORE_ITERATIONS = 6_000
LIMITS_ITERATIONS = 1_000  # a small function: ~6 % of the samples


def burst_size(rate: float) -> int:
    """Ticks per wake-up at ``rate`` a second: a burst per ~2 ms, as the event loop cannot sleep much
    less than a millisecond (one tick per wake-up would cap the rate well below what the work allows)."""
    return max(2, round(rate / 500))


class Model(Actor):
    """Three costly functions per tick; any can be slowed down, the first can be refactored."""

    name = "model"

    async def on_start(self) -> None:
        self.factors = {"compute_features": 1.0, "score_signal": 1.0, "check_limits": 1.0}
        self.refactored = False
        self.last = 0
        self.rng = random.Random()
        self.drive_rate = 0.0
        self.driver: asyncio.Task[None] | None = None
        self.spent = dict.fromkeys(self.factors, 0)  # ns in each function, by the clock (~0.1 us a call)
        self.calls = 0

    async def on_stop(self) -> None:
        if self.driver is not None:
            self.driver.cancel()

    async def _drive(self) -> None:
        """Tick itself at ``drive_rate`` per second, in bursts (:func:`burst_size`) at random gaps."""
        i = 0
        burst = burst_size(self.drive_rate)
        while True:
            await asyncio.sleep(self.rng.expovariate(self.drive_rate / burst))
            for _ in range(burst):
                self.on_tick(Key("tick", "self"), i)
                i += 1

    def iterations(self, base: int, function: str) -> int:
        """``base`` loop iterations, times the function's factor, times a random 0.7 .. 1.3."""
        return int(base * self.factors[function] * self.rng.uniform(0.7, 1.3))

    @handler(("tick", "*"))
    def on_tick(self, key: Key, payload: Any) -> None:
        clock, spent = time.perf_counter_ns, self.spent
        t0 = clock()
        features = self.compute_features(payload)
        t1 = clock()
        score = self.score_signal(payload)
        t2 = clock()
        limits = self.check_limits(payload)
        t3 = clock()
        spent["compute_features"] += t1 - t0
        spent["score_signal"] += t2 - t1
        spent["check_limits"] += t3 - t2
        self.calls += 1
        self.last = features + score + limits

    def compute_features(self, payload: Any) -> int:
        iterations = self.iterations(FEATURES_ITERATIONS, "compute_features")
        if self.refactored:
            return self.features_kernel(iterations)
        total = 0
        for i in range(iterations):
            total += i * i
        return total

    def features_kernel(self, iterations: int) -> int:
        total = 0
        for i in range(iterations):
            total += i * i
        return total

    def score_signal(self, payload: Any) -> int:
        total = 0
        for i in range(self.iterations(SCORE_ITERATIONS, "score_signal")):
            total += i * i
        return total

    def check_limits(self, payload: Any) -> int:
        total = 0
        for i in range(self.iterations(LIMITS_ITERATIONS, "check_limits")):
            total += i * i
        return total

    @answers(("control", "sync"))
    def sync(self, key: Key, payload: Any) -> dict[str, Any]:
        """The state once every message queued before this ask was handled."""
        return {
            "refactored": self.refactored,
            "factors": dict(self.factors),
            "drive_rate": self.drive_rate,
            "spent": dict(self.spent),
            "calls": self.calls,
        }

    @handler(("control", "*"))
    def on_control(self, key: Key, payload: Any) -> None:
        if key[1] == "slow":
            self.factors[str(payload["function"])] = float(payload["factor"])
        elif key[1] == "drive":
            self.drive_rate = float(payload["rate"])
            if self.driver is None:
                self.driver = asyncio.get_running_loop().create_task(self._drive())
        elif key[1] == "refactor":
            self.refactored = bool(payload.get("on", True)) if isinstance(payload, dict) else True
