"""Synthetic profile windows for the detector's unit tests: samples drawn from a known call tree."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping

from observability.profiling import ProfileWindow, WindowLabels

ROOT = "app.py:main;loop.py:run_once"
HANDLER = f"{ROOT};actor.py:dispatch;model.py:Model.on_tick"
STACKS = {  # stack -> CPU per message (arbitrary units), or per window for the loop's own work
    f"{HANDLER};model.py:Model.compute_features": 50.0,
    f"{HANDLER};model.py:Model.score_signal": 30.0,
    HANDLER: 5.0,
    f"{ROOT};hub.py:Hub.receive": 10.0,
    f"{ROOT};log.py:Logger.emit": 5.0,
}
FEATURES = "model.py:Model.compute_features"
SCORE = "model.py:Model.score_signal"
KERNEL = "model.py:Model.features_kernel"


def window(
    rng: random.Random,
    index: int,
    *,
    samples: int = 3000,
    costs: Mapping[str, float] = STACKS,
    handled: int = 2000,
    version: str = "1.0",
    length: float = 2.0,
) -> ProfileWindow:
    """Window ``index`` of a steady actor: ``samples`` drawn in proportion to ``costs``."""
    stacks = list(costs)
    drawn = Counter(rng.choices(stacks, weights=[costs[s] for s in stacks], k=samples))
    labels = WindowLabels(host="h", group="model", pid=100, actors=("model",), version=version)
    start = 1_000_000.0 + index * length
    return ProfileWindow(
        labels=labels,
        start=start,
        end=start + length,
        samples=samples,
        cpu_us=samples * 500,
        stacks=dict(drawn),
        handled={"model": handled} if handled else {},
    )


def costlier(function: str, factor: float, costs: Mapping[str, float] = STACKS) -> dict[str, float]:
    """``costs`` with every stack ending in ``function`` ``factor`` times as costly."""
    return {s: c * factor if s.endswith(function) else c for s, c in costs.items()}


def refactored(costs: Mapping[str, float] = STACKS) -> dict[str, float]:
    """``compute_features``'s work moved into a new callee, ``features_kernel`` (a little stays)."""
    out = {}
    for stack, cost in costs.items():
        if stack.endswith(FEATURES):
            out[stack] = cost * 0.02
            out[f"{stack};{KERNEL}"] = cost * 0.98
        else:
            out[stack] = cost
    return out


def loaded(factor: float, costs: Mapping[str, float] = STACKS) -> dict[str, float]:
    """More messages: every per-message stack ``factor`` times the samples, the loop's own work not."""
    return {s: c * factor if "dispatch" in s else c for s, c in costs.items()}


def with_share(
    rng: random.Random,
    index: int,
    function: str,
    share: float,
    *,
    sd: float = 0.0,
    samples: int = 550,
    length: float = 20.0,
    costs: Mapping[str, float] = STACKS,
) -> ProfileWindow:
    """A window where the stack ending in ``function`` takes a share drawn around ``share`` (normal,
    ``sd``: more than sampling noise, as real windows vary) and the others keep their proportions."""
    drawn = min(0.95, max(0.01, rng.gauss(share, sd)))
    mine = next(s for s in costs if s.endswith(function))
    others = {s: c for s, c in costs.items() if s != mine}
    weights = {**others, mine: drawn / (1 - drawn) * sum(others.values())}
    return window(rng, index, samples=samples, costs=weights, length=length)


def risen(share: float, factor: float) -> float:
    """The share of a function holding ``share`` once it is ``factor`` times as costly."""
    return share * factor / (1 + (factor - 1) * share)
