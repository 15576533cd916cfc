"""What the regression detector is told and what it tells: its parameters (:class:`DetectionConfig`),
its events (:class:`Regression`) and how far a group is from its first evaluation (:class:`Readiness`).

The method they belong to is in :mod:`observability.profiling._regression`'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._regression_stats import Kind

State = Literal["active", "resolved"]
# waiting, not working: in CPU mode their samples are the syscalls of an idle loop, and their share
# moves with how idle the actor is (any frame label containing one of these is not tested)
IDLE_FUNCTIONS = ("/selectors.py:", "/threading.py:Condition.wait", "/threading.py:Event.wait", ":<idle>")


@dataclass(frozen=True)
class DetectionConfig:
    """The detector's parameters; see the module docstring for what each does."""

    baseline_windows: int = 30
    min_baseline_windows: int = 8
    pools: tuple[int, ...] = (2, 3, 5, 8, 13, 21)
    alpha: float = 0.0003
    min_share: float = 0.02
    min_relative_change: float = 0.05
    min_absolute_change: float = 0.004
    min_window_samples: int = 20
    refactor_fraction: float = 0.5
    local_z: float = 2.326
    max_local_share: float = 0.9
    resolve_after: int = 3
    resolve_pool: int = 5
    confirm: int = 1
    ignore: tuple[str, ...] = IDLE_FUNCTIONS
    load_tolerance: float = 0.3

    def __post_init__(self) -> None:
        if not self.pools or list(self.pools) != sorted(set(self.pools)) or self.pools[0] < 1:
            raise ValueError(f"pools must be distinct window counts >= 1, increasing; got {self.pools}")
        if self.resolve_pool < 1:
            raise ValueError(f"resolve_pool must be >= 1, got {self.resolve_pool}")
        if self.min_baseline_windows < 2 or self.baseline_windows < self.min_baseline_windows:
            raise ValueError("need 2 <= min_baseline_windows <= baseline_windows")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    @property
    def min_persist(self) -> int:
        """The smallest pool: a change must last this many windows (step 5)."""
        return self.pools[0]

    @property
    def max_pool(self) -> int:
        """The largest pool."""
        return self.pools[-1]

    @property
    def warm_up(self) -> int:
        """Usable windows of one version at one load before a group's first evaluation."""
        return self.min_baseline_windows + self.min_persist


@dataclass(frozen=True, slots=True)
class Regression:
    """One regression (``state`` ``active``) or its end (``resolved``), for one function of one group."""

    state: State
    host: str
    group: str
    actors: tuple[str, ...]
    pid: int
    version: str
    baseline_version: str
    function: str  # the window's frame label, ``file:qualified.name``
    kind: Kind
    baseline_share: float
    current_share: float
    relative_change: float
    confidence: float
    p_value: float
    windows: int  # current windows pooled
    baseline_windows: int
    since: float  # start of the first pooled window
    at: float  # end of the latest window
    per_message_change: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """What de-duplicates alerts: host, group and function."""
        return (self.host, self.group, self.function)


@dataclass(frozen=True, slots=True)
class Readiness:
    """How far a group is from its first evaluation (step 2 needs a baseline and a pool)."""

    host: str
    group: str
    collected: int  # usable windows of the current version and load (baseline + pool)
    needed: int  # collected + the windows still to come before the first evaluation
    thin: int  # windows ignored for having fewer than ``min_window_samples`` samples
    evaluations: int  # evaluations of this group so far

    @property
    def ready(self) -> bool:
        """True once the detector evaluates the group on every new window."""
        return self.collected >= self.needed

    @property
    def remaining(self) -> int:
        """Windows still to come before the first evaluation."""
        return max(0, self.needed - self.collected)
