"""The regression detector's arithmetic: per-window counts, the tests, and call-tree measures.

Pure functions over :class:`~observability.profiling._windows.ProfileWindow` objects; the method they serve is
described in :mod:`observability.profiling._regression`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ._windows import FRAME_SEPARATOR, ProfileWindow

Kind = Literal["self", "inclusive"]


@dataclass(frozen=True)
class WindowCounts:
    """One window's per-function counts (computed once per window)."""

    window: ProfileWindow
    total: int
    own: Counter[str]
    incl: Counter[str]

    @classmethod
    def of(cls, window: ProfileWindow) -> WindowCounts:
        return cls(window, sum(window.stacks.values()), window.self_counts(), window.inclusive_counts())

    def count(self, function: str, kind: Kind) -> int:
        return (self.own if kind == "self" else self.incl).get(function, 0)


def message_rate(window: ProfileWindow) -> float | None:
    """Messages handled per second in ``window``; ``None`` when unknown (no stats)."""
    seconds = window.end - window.start
    if not window.handled or seconds <= 0:
        return None
    return window.handled_total / seconds


def normal_sf(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def share_costlier(share: float, change: float) -> float:
    """The share of a function holding ``share`` of the samples once it alone is ``change`` costlier
    (0.1: 10 %), everything else unchanged: ``share (1 + change) / (1 + change share)``.

    A share grows less than its function's cost, since the samples it gains grow the whole too: a
    function of 37 % made 10 % costlier holds 39.2 % (6 % more share), one of 60 % holds 62.3 % (4 %).
    """
    return share * (1 + change) / (1 + change * share)


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (q-values), in the input order."""
    n = len(p_values)
    order = sorted(range(n), key=lambda i: p_values[i])
    adjusted = [1.0] * n
    running = 1.0
    for rank in range(n, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * n / rank)
        adjusted[i] = min(1.0, running)
    return adjusted


def dispersion(counts: Sequence[int], totals: Sequence[int]) -> float:
    """Pearson chi-square over degrees of freedom of per-window counts under one share (>= 0)."""
    n = sum(totals)
    if len(counts) < 2 or n == 0:
        return 1.0
    p = sum(counts) / n
    if p <= 0.0 or p >= 1.0:
        return 1.0
    q = 1 - p
    chi2 = sum([(x - t * p) ** 2 / (t * p * q) for x, t in zip(counts, totals, strict=True) if t])
    return chi2 / (len(counts) - 1)


def rise_z(x_cur: int, n_cur: int, x_base: int, n_base: int, phi: float) -> float:
    """One-sided z of the current share over the baseline share (pooled-variance, scaled by ``phi``)."""
    if n_cur == 0 or n_base == 0:
        return 0.0
    pooled = (x_cur + x_base) / (n_cur + n_base)
    if pooled <= 0.0 or pooled >= 1.0:
        return 0.0
    se = math.sqrt(phi * pooled * (1 - pooled) * (1 / n_cur + 1 / n_base))
    return (x_cur / n_cur - x_base / n_base) / se


def callers_of(function: str, windows: Iterable[ProfileWindow]) -> frozenset[str]:
    """The functions that call ``function`` directly in ``windows``' stacks (never itself)."""
    found: set[str] = set()
    for window in windows:
        for stack in window.stacks:
            frames = stack.split(FRAME_SEPARATOR)
            for i in range(1, len(frames)):
                if frames[i] == function and frames[i - 1] != function:
                    found.add(frames[i - 1])
    return frozenset(found)


def subtree_counts(
    function: str, kind: Kind, callers: frozenset[str], window: ProfileWindow
) -> tuple[int, int]:
    """Samples of ``window`` under any of ``callers``, and how many of those count for ``function``."""
    subtree = mine = 0
    for stack, n in window.stacks.items():
        frames = stack.split(FRAME_SEPARATOR)
        if callers.isdisjoint(frames):
            continue
        subtree += n
        if (frames[-1] == function) if kind == "self" else (function in frames):
            mine += n
    return subtree, mine


def _related(
    function: str, kind: Kind, callers: frozenset[str], windows: Iterable[WindowCounts]
) -> tuple[Counter[str], int]:
    """Among the samples that do not count for ``function``: the callers' self counts, and how many
    such samples there are."""
    counts: Counter[str] = Counter()
    others = 0
    for w in windows:
        for stack, n in w.window.stacks.items():
            frames = stack.split(FRAME_SEPARATOR)
            if (frames[-1] == function) if kind == "self" else (function in frames):
                continue
            others += n
            if frames[-1] in callers:
                counts[frames[-1]] += n
    return counts, others


def moved_share(
    function: str, kind: Kind, pool: Sequence[WindowCounts], base: Sequence[WindowCounts], z: float
) -> float:
    """How much share the function's callers lost beyond dilution, in share points (cost moved).

    Among the samples that do not count for ``function``, every other function keeps its proportion
    when ``function`` alone got costlier; when cost moved out of a caller's own code into
    ``function`` (a new callee), the caller's part drops. Only drops significant at ``z`` are summed.
    """
    windows = [w.window for w in pool]
    callers = callers_of(function, windows)
    cur, n_cur = _related(function, kind, callers, pool)
    old, n_old = _related(function, kind, callers, base)
    if not (n_cur and n_old):
        return 0.0
    moved = 0.0
    for g, x_old in old.items():
        if rise_z(x_old, n_old, cur.get(g, 0), n_cur, 1.0) >= z:
            # a move of d from g leaves it d * (1 - its old part of the others) below dilution
            before = x_old / n_old
            moved += (before - cur.get(g, 0) / n_cur) / max(0.05, 1.0 - before)
    total_cur = sum(w.total for w in pool)
    return moved * n_cur / total_cur if total_cur else 0.0


def is_ancestor(upper: str, lower: str, windows: Iterable[ProfileWindow]) -> bool:
    """True when ``upper`` sits above ``lower`` on some stack of ``windows``."""
    for window in windows:
        for stack in window.stacks:
            frames = stack.split(FRAME_SEPARATOR)
            if lower in frames and upper in frames[: frames.index(lower)]:
                return True
    return False
