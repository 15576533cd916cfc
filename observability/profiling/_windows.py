"""Profile windows: samples of one actor process folded into collapsed stacks over fixed time windows.

A window is what the profiling collector stores and what regressions will be detected on: for one
process (host, group, actors, pid, version) and one stretch of time, how often each stack was seen
(``"outer;...;leaf" -> count``, Brendan Gregg's folded format), how much CPU time the samples stand
for, and how many messages each of its actors handled meanwhile, so that CPU per message can be
compared across versions.

Problem: windows must be comparable across processes, restarts and versions. Approach: frames are
labelled ``file:function`` (Austin gives the qualified name) without line numbers, which would split
one function's samples across every edit of its body; windows end on multiples of the window length
since the epoch, so windows of different processes line up and merge into hourly roll-ups. Limits:
the first and last window of a process are partial (``start``/``end`` say so); ``handled`` is the
difference between the last ``('$actors', 'stats', group)`` counters seen before each window's end,
so up to one stats interval (1 s) of messages lands in the neighbouring window.

Pure logic: no clock, sockets or processes; callers pass ``now`` (seconds since the epoch).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._austin import AustinSample, StackFrame

FRAME_SEPARATOR = ";"
NO_FRAMES = "<no Python frames>"
DEFAULT_WINDOW = 20.0  # 10 windows of warm-up (see _regression) take ~3.5 min, not 10


def frame_label(frame: StackFrame) -> str:
    """``file:function`` for one frame (``;`` is the stack separator, so it is replaced)."""
    return f"{frame.file}:{frame.function}".replace(FRAME_SEPARATOR, ",")


def collapse(stack: Iterable[StackFrame]) -> str:
    """The folded form of a stack, outermost frame first: ``"a.py:main;a.py:work"``."""
    return FRAME_SEPARATOR.join(frame_label(f) for f in stack) or NO_FRAMES


@dataclass(frozen=True, slots=True)
class WindowLabels:
    """Which process a window profiles (from its ``('$actors', 'hello', group)`` announcement)."""

    host: str
    group: str
    pid: int
    actors: tuple[str, ...] = ()
    version: str = ""


@dataclass(frozen=True, slots=True)
class FunctionShare:
    """One function's part of a window's samples: self (leaf) and inclusive (anywhere on the stack)."""

    function: str
    self_samples: int
    inclusive_samples: int
    self_share: float
    inclusive_share: float


@dataclass(frozen=True)
class ProfileWindow:
    """The folded samples of one process over ``[start, end)``; see the module docstring."""

    labels: WindowLabels
    start: float
    end: float
    samples: int
    cpu_us: int
    stacks: Mapping[str, int] = field(default_factory=dict)
    handled: Mapping[str, int] = field(default_factory=dict)

    @property
    def handled_total(self) -> int:
        """Messages handled by all of the process's actors during the window."""
        return sum(self.handled.values())

    def self_counts(self) -> Counter[str]:
        """Samples per function when it was the leaf (running its own code)."""
        counts: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            counts[stack.rpartition(FRAME_SEPARATOR)[2]] += n
        return counts

    def inclusive_counts(self) -> Counter[str]:
        """Samples per function anywhere on the stack (counted once per sample under recursion)."""
        counts: Counter[str] = Counter()
        for stack, n in self.stacks.items():
            for function in set(stack.split(FRAME_SEPARATOR)):
                counts[function] += n
        return counts

    def function_shares(self) -> list[FunctionShare]:
        """Every function's self and inclusive share, highest self share first (then inclusive, name)."""
        total = sum(self.stacks.values())
        if not total:
            return []
        own = self.self_counts()
        shares = [
            FunctionShare(function, own[function], n, own[function] / total, n / total)
            for function, n in self.inclusive_counts().items()
        ]
        shares.sort(key=lambda s: (-s.self_samples, -s.inclusive_samples, s.function))
        return shares

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (msgpack/JSON-able) that :meth:`from_dict` reads back."""
        return {
            "host": self.labels.host,
            "group": self.labels.group,
            "pid": self.labels.pid,
            "actors": list(self.labels.actors),
            "version": self.labels.version,
            "start": self.start,
            "end": self.end,
            "samples": self.samples,
            "cpu_us": self.cpu_us,
            "stacks": dict(self.stacks),
            "handled": dict(self.handled),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProfileWindow:
        """The window :meth:`to_dict` described."""
        labels = WindowLabels(
            host=str(data["host"]),
            group=str(data["group"]),
            pid=int(data["pid"]),
            actors=tuple(str(a) for a in data.get("actors", ())),
            version=str(data.get("version", "")),
        )
        return cls(
            labels=labels,
            start=float(data["start"]),
            end=float(data["end"]),
            samples=int(data["samples"]),
            cpu_us=int(data["cpu_us"]),
            stacks={str(k): int(v) for k, v in data.get("stacks", {}).items()},
            handled={str(k): int(v) for k, v in data.get("handled", {}).items()},
        )


def merge_windows(windows: Iterable[ProfileWindow]) -> ProfileWindow:
    """One window covering all of ``windows``: counts added, labels of the latest window.

    Used for hourly roll-ups and for ``tickbus profile top --last N``. ``ValueError`` when empty.
    """
    ordered = sorted(windows, key=lambda w: (w.start, w.end))
    if not ordered:
        raise ValueError("merge_windows() needs at least one window")
    stacks: Counter[str] = Counter()
    handled: Counter[str] = Counter()
    for window in ordered:
        stacks.update(window.stacks)
        handled.update(window.handled)
    last = ordered[-1]
    return ProfileWindow(
        labels=last.labels,
        start=ordered[0].start,
        end=max(w.end for w in ordered),
        samples=sum(w.samples for w in ordered),
        cpu_us=sum(w.cpu_us for w in ordered),
        stacks=dict(stacks),
        handled=dict(handled),
    )


def window_end(now: float, length: float) -> float:
    """The end of the window holding ``now``: the next multiple of ``length`` after it."""
    return (math.floor(now / length) + 1) * length


class WindowFolder:
    """Folds one process's samples and handled counters into consecutive windows.

    Every method takes ``now`` and returns the windows that ended by then (usually none, sometimes
    one). Windows without samples and without handled messages are not returned.
    """

    def __init__(self, labels: WindowLabels, now: float, length: float = DEFAULT_WINDOW) -> None:
        if not length > 0:
            raise ValueError(f"window length must be positive seconds, got {length!r}")
        self.labels = labels
        self.length = length
        self._start = now
        self._end = window_end(now, length)
        self._stacks: Counter[str] = Counter()
        self._samples = 0
        self._cpu_us = 0
        self._baseline: dict[str, int] | None = None  # handled counters at the last window's end
        self._latest: dict[str, int] = {}

    def add(self, sample: AustinSample, now: float) -> list[ProfileWindow]:
        """Count one sample, received at ``now``."""
        closed = self.tick(now)
        self._stacks[collapse(sample.stack)] += 1
        self._samples += 1
        self._cpu_us += sample.cpu_us
        return closed

    def observe_handled(self, handled: Mapping[str, int], now: float) -> list[ProfileWindow]:
        """Record the process's cumulative per-actor ``handled`` counters, as published at ``now``."""
        closed = self.tick(now)
        if self._baseline is None:  # counts from before the first observation are not ours
            self._baseline = dict(handled)
        self._latest = dict(handled)
        return closed

    def relabel(self, labels: WindowLabels) -> None:
        """Use new labels from the current window on (an announcement arrived for a ``--pid`` target)."""
        self.labels = labels

    def tick(self, now: float) -> list[ProfileWindow]:
        """Close the current window if ``now`` is past its end."""
        if now < self._end:
            return []
        window = self._close(self._end)
        self._end = window_end(now, self.length)
        self._start = self._end - self.length
        return [window] if window is not None else []

    def flush(self, now: float) -> list[ProfileWindow]:
        """Close the current (partial) window at ``now``: the process exited or we are stopping."""
        closed = self.tick(now)
        window = self._close(max(now, self._start))
        self._start = max(now, self._start)
        return closed if window is None else [*closed, window]

    def _close(self, end: float) -> ProfileWindow | None:
        baseline = self._baseline or {}
        handled = {
            actor: count - baseline.get(actor, 0) if count >= baseline.get(actor, 0) else count
            for actor, count in self._latest.items()
        }
        handled = {actor: n for actor, n in handled.items() if n}
        if self._baseline is not None:
            self._baseline = dict(self._latest)
        window = ProfileWindow(
            labels=self.labels,
            start=self._start,
            end=end,
            samples=self._samples,
            cpu_us=self._cpu_us,
            stacks=dict(self._stacks),
            handled=handled,
        )
        self._stacks = Counter()
        self._samples = 0
        self._cpu_us = 0
        if not window.samples and not handled:
            return None
        return window
