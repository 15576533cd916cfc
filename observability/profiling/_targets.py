"""Which processes the profiling collector samples, and the windows it folds for each.

Pure bookkeeping for :class:`observability.Profiler`, fed with the payloads of the ``$actors``
announcements (:mod:`actors._runner`) and with ``now``; no sockets, processes or clock.

Targets are keyed by pid, not by group: several ``tickbus run`` processes may share a group name
(the default is ``actors``). A process of this host announcing itself with an unknown pid becomes a
target; a restarted group is simply a new pid, and the old target goes when its sampler finds the
old pid gone. ``--pid`` targets are labelled ``pid-<pid>`` until an announcement names them.

Announcements are untrusted (any peer may send one): a hello is taken only when its names are
printable and short, the table has room (``max_targets``) and ``accept(pid)`` (the collector's check
that the pid is a process it should sample: its own user's) says yes; a known pid is relabelled
only when it was added by hand or keeps its group. Refusals are counted by kind in ``refused``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._windows import DEFAULT_WINDOW, ProfileWindow, WindowFolder, WindowLabels

DEFAULT_MAX_TARGETS = 256  # processes one collector samples (each is an Austin process)
_MAX_NAME = 200  # characters of a group, host, version or actor name in a hello
_MAX_ACTORS = 1_000  # actor names in one hello


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

    def __init__(
        self,
        host: str,
        *,
        window: float = DEFAULT_WINDOW,
        max_targets: int = DEFAULT_MAX_TARGETS,
        accept: Callable[[int], str | None] | None = None,
    ) -> None:
        self.host = host
        self.window = window
        self._max_targets = max_targets
        self._accept = accept
        self._targets: dict[int, Target] = {}
        self._last_pid: dict[str, int] = {}  # group -> most recent pid, to report restarts
        self.refused: dict[str, int] = {}  # hellos not taken, by kind: labels, full, process, relabel
        self.last_refusal = ""  # why the latest one was refused (for the collector's log)

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
        if labels is None:
            return self._refuse("labels", "a hello without printable group, host and pid")
        if labels.host != self.host:
            return None
        known = self._targets.get(labels.pid)
        if known is not None:
            self._relabel(known, labels)
            return None
        if len(self._targets) >= self._max_targets:
            return self._refuse("full", f"already {self._max_targets} targets (max_targets)")
        why = self._accept(labels.pid) if self._accept is not None else None
        if why is not None:
            return self._refuse("process", f"pid {labels.pid} {why}")
        previous = self._last_pid.pop(labels.group, None)
        self._last_pid[labels.group] = labels.pid
        if len(self._last_pid) > 4 * self._max_targets:  # bounded: the least recently announced go
            del self._last_pid[next(iter(self._last_pid))]
        target = Target(labels, WindowFolder(labels, now, self.window))
        self._targets[labels.pid] = target
        return Discovery(target, previous if previous != labels.pid else None)

    def _relabel(self, known: Target, labels: WindowLabels) -> None:
        """A hello for a known pid: a --pid target announcing itself, or its own group's new
        version or actors; never another group's name on it (a peer relabelling a process)."""
        if known.labels == labels:
            return
        if not (known.manual or known.labels.group == labels.group):
            self._refuse("relabel", f"a hello naming pid {labels.pid}, a target of another group")
            return
        known.labels = labels
        known.folder.relabel(labels)
        known.manual = False  # a --pid target takes its group's name once; then it is that group's

    def _refuse(self, kind: str, why: str) -> Discovery | None:
        """Count a hello not taken (``kind``: one of a fixed few); nothing found."""
        self.refused[kind] = self.refused.get(kind, 0) + 1
        self.last_refusal = why
        return None

    def bye(self, payload: Any) -> Target | None:
        """Handle ``('$actors', 'bye', group)``: the target that is stopping, if it is ours and had not
        said so already (a repeated bye is no news)."""
        pid = payload.get("pid") if isinstance(payload, Mapping) else None
        target = self._targets.get(pid) if isinstance(pid, int) else None
        if target is None or target.said_bye:
            return None
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
        if len(actors) > _MAX_ACTORS:  # as in a hello: the windows keep these names
            self._refuse("stats", f"a stats message of pid {pid} naming {len(actors)} actors")
            return []
        handled = {
            name: int(stats["handled"])
            for name, stats in actors.items()
            if _name(name) and isinstance(stats, Mapping) and type(stats.get("handled")) is int
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


def _name(value: object) -> bool:
    """A name a hello may carry: a short string of printable characters (it reaches logs, alerts,
    the store and terminals)."""
    return isinstance(value, str) and 0 < len(value) <= _MAX_NAME and value.isprintable()


def _labels(payload: Any) -> WindowLabels | None:
    if not isinstance(payload, Mapping):
        return None
    group, pid, host = payload.get("group"), payload.get("pid"), payload.get("host")
    if not (_name(group) and type(pid) is int and 0 < pid < 2**31 and _name(host)):
        return None
    actors, version = payload.get("actors", []), payload.get("version", "")
    if not isinstance(actors, list | tuple) or len(actors) > _MAX_ACTORS or not all(map(_name, actors)):
        return None
    if not (version == "" or _name(version)):
        return None
    assert isinstance(group, str) and isinstance(host, str) and isinstance(version, str)  # for mypy
    return WindowLabels(host=host, group=group, pid=pid, actors=tuple(actors), version=version)
