"""The demo-regression model: the pipeline's model plus a risk estimate that can be made slower.

``RiskModel`` is :class:`examples.pipeline.Model` whose tick handler also runs
``risk_estimate`` (a few dozen microseconds of arithmetic over the symbol's recent returns) and
``signal_strength``. ``('control', 'slow')`` with ``{"function": "risk_estimate", "factor": 1.25}``
makes that function do 25 % more work from then on: the regression ``make demo-regression`` injects.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from actors import Key, handler

from .pipeline import Model

HISTORY = 64
RISK_PASSES = 48
SIGNAL_PASSES = 16


class RiskModel(Model):
    """The pipeline's model with two costly helpers per tick; see the module docstring."""

    name = "model"

    async def on_start(self) -> None:
        await super().on_start()
        self.returns: dict[str, deque[float]] = {}
        self.factors = {"risk_estimate": 1.0, "signal_strength": 1.0}
        self.last_px: dict[str, float] = {}
        self.risk: dict[str, float] = {}

    @handler(("tick", "*"))
    def on_tick(self, key: Key, tick: dict[str, Any]) -> None:
        """The pipeline model's update, then the risk estimate and the signal strength."""
        super().on_tick(key, tick)
        sym, px = tick["sym"], tick["px"]
        previous = self.last_px.get(sym, px)
        self.last_px[sym] = px
        history = self.returns.setdefault(sym, deque(maxlen=HISTORY))
        history.append(math.log(px / previous) if previous > 0 else 0.0)
        self.risk[sym] = self.risk_estimate(history) + self.signal_strength(history)

    def risk_estimate(self, history: deque[float]) -> float:
        """Mean absolute deviation of the recent returns, recomputed ``RISK_PASSES`` times."""
        total = 0.0
        mean = sum(history) / len(history)
        for _ in range(round(RISK_PASSES * self.factors["risk_estimate"])):
            for r in history:
                total += abs(r - mean)
        return total

    def signal_strength(self, history: deque[float]) -> float:
        """Sum of squared returns, recomputed ``SIGNAL_PASSES`` times."""
        total = 0.0
        for _ in range(round(SIGNAL_PASSES * self.factors["signal_strength"])):
            for r in history:
                total += r * r
        return total

    @handler(("control", "slow"))
    def on_slow(self, key: Key, payload: Any) -> None:
        """``{"function": name, "factor": f}``: make one helper ``f`` times as costly."""
        if isinstance(payload, dict) and payload.get("function") in self.factors:
            self.factors[str(payload["function"])] = float(payload.get("factor", 1.0))
