"""Which processes the profiling collector samples, and the windows it folds for each.

Pure bookkeeping for :class:`observability.Profiler`, fed with the payloads of the ``$actors``
announcements (:mod:`actors._runner`) and with ``now``; no sockets, processes or clock.

Targets are keyed by pid, not by group: several ``tickbus run`` processes may share a group name
(the default is ``actors``). A process of this host announcing itself with an unknown pid becomes a
target; a restarted group is simply a new pid, and the old target goes when its sampler finds the
old pid gone. ``--pid`` targets are labelled ``pid-<pid>`` until an announcement names them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._windows import DEFAULT_WINDOW, ProfileWindow, WindowFolder, WindowLabels


@dataclass
class Target:
    """One process being profiled."""

    labels: WindowLabels
    folder: WindowFolder
    manual: bool = False
    said_bye: bool = False
    failures: int = field(default=0)  # consecutive sampler failures, for the backoff

    @property
    def pid(self) -> int:
        """The target's process id."""
        return self.labels.pid

    def describe(self) -> str:
        """``group <g> (pid <p>)`` for log lines."""
        return f"group {self.labels.group} (pid {self.pid})"


@dataclass(frozen=True, slots=True)
class Discovery:
    """What an announcement changed: a new target, and the pid its group had before (a restart)."""

    target: Target
    previous_pid: int | None


def backoff_delay(failures: int, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait before restarting a sampler after ``failures`` consecutive failures (>= 1)."""
    return float(min(cap, base * 2 ** max(0, failures - 1)))


class TargetTable:
    """The targets of one collector on ``host``, with their window folders."""

    def __init__(self, host: str, *, window: float = DEFAULT_WINDOW) -> None:
        self.host = host
        self.window = window
        self._targets: dict[int, Target] = {}
        self._last_pid: dict[str, int] = {}  # group -> most recent pid, to report restarts

    def __iter__(self) -> Iterator[Target]:
        return iter(list(self._targets.values()))

    def __len__(self) -> int:
        return len(self._targets)

    def get(self, pid: int) -> Target | None:
        """The target with this pid, if any."""
        return self._targets.get(pid)

    def add_pid(self, pid: int, now: float, version: str = "") -> Target:
        """Profile ``pid`` by hand (``--pid``); an announcement may name it later."""
        labels = WindowLabels(host=self.host, group=f"pid-{pid}", pid=pid, version=version)
        target = Target(labels, WindowFolder(labels, now, self.window), manual=True)
        self._targets[pid] = target
        return target

    def hello(self, payload: Any, now: float) -> Discovery | None:
        """Handle ``('$actors', 'hello', group)``; a :class:`Discovery` when it names a new process here."""
        labels = _labels(payload)
        if labels is None or labels.host != self.host:
            return None
        previous = self._last_pid.get(labels.group)
        self._last_pid[labels.group] = labels.pid
        known = self._targets.get(labels.pid)
        if known is not None:
            if known.labels != labels:  # a --pid target announced itself, or it was relabelled
                known.labels = labels
                known.folder.relabel(labels)
            return None
        target = Target(labels, WindowFolder(labels, now, self.window))
        self._targets[labels.pid] = target
        return Discovery(target, previous if previous != labels.pid else None)

    def bye(self, payload: Any) -> Target | None:
        """Handle ``('$actors', 'bye', group)``: the target that is stopping, if it is ours."""
        pid = payload.get("pid") if isinstance(payload, Mapping) else None
        target = self._targets.get(pid) if isinstance(pid, int) else None
        if target is not None:
            target.said_bye = True
        return target

    def stats(self, payload: Any, now: float) -> list[ProfileWindow]:
        """Handle ``('$actors', 'stats', group)``: per-actor ``handled`` counters of a target."""
        if not isinstance(payload, Mapping):
            return []
        pid = payload.get("pid")
        target = self._targets.get(pid) if isinstance(pid, int) else None
        actors = payload.get("actors")
        if target is None or not isinstance(actors, Mapping):
            return []
        handled = {
            str(name): int(stats["handled"])
            for name, stats in actors.items()
            if isinstance(stats, Mapping) and isinstance(stats.get("handled"), int)
        }
        return target.folder.observe_handled(handled, now)

    def tick(self, now: float) -> list[ProfileWindow]:
        """Close every window that ended by ``now``."""
        return [w for t in self._targets.values() for w in t.folder.tick(now)]

    def remove(self, pid: int, now: float) -> list[ProfileWindow]:
        """Forget a target; its last, partial windows."""
        target = self._targets.pop(pid, None)
        return target.folder.flush(now) if target is not None else []

    def flush_all(self, now: float) -> list[ProfileWindow]:
        """Close every target's current window (the collector is stopping)."""
        return [w for t in self._targets.values() for w in t.folder.flush(now)]


def _labels(payload: Any) -> WindowLabels | None:
    if not isinstance(payload, Mapping):
        return None
    group, pid, host = payload.get("group"), payload.get("pid"), payload.get("host")
    if not (isinstance(group, str) and isinstance(pid, int) and isinstance(host, str)):
        return None
    actors = payload.get("actors")
    return WindowLabels(
        host=host,
        group=group,
        pid=pid,
        actors=tuple(str(a) for a in actors) if isinstance(actors, list | tuple) else (),
        version=str(payload.get("version", "")),
    )
