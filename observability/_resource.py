"""What every exporter shares: the OpenTelemetry resource of this process and the data directory.

The data directory holds the embedded exports (OTLP JSON lines for traces and metrics, profiles
later): ``$TICKBUS_DATA_DIR`` if set, else ``$XDG_STATE_HOME/tickbus``, else ``~/.local/state/tickbus``.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path

from opentelemetry.sdk.resources import Resource


def data_dir(create: bool = True) -> Path:
    """The directory for embedded exports (created unless ``create=False``)."""
    explicit = os.environ.get("TICKBUS_DATA_DIR")
    if explicit:
        path = Path(explicit)
    else:
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(state) / "tickbus"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def tickbus_version() -> str:
    """The installed tickbus version (``0+unknown`` when run from a bare checkout).

    Looked up once a process: the code that runs does not change with what is installed later.
    """
    try:
        return metadata.version("tickbus")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def module_version(module: str) -> str | None:
    """The installed version of the distribution that provides ``module``'s top-level package.

    ``None`` when no installed distribution provides it (a bare checkout, a script directory).
    """
    top = module.partition(".")[0]
    for name in _distributions_by_package().get(top, ()):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def _distributions_by_package() -> Mapping[str, list[str]]:
    # Read once a process: it opens every installed distribution's metadata (and its RECORD where
    # it lists no top-level packages), 40-50 ms of one core in the demo's virtualenv. In a running
    # group that was a 30-55 ms stall of its loop right after its actors started.
    return metadata.packages_distributions()


def process_resource(service: str, actors: Sequence[str] = (), version: str | None = None) -> Resource:
    """This process's resource: service name (``$OTEL_SERVICE_NAME`` wins), version, host, pid, actors.

    ``service.version`` is the application's ``version`` (tickbus's when not given);
    ``$OTEL_RESOURCE_ATTRIBUTES`` is merged in by the SDK as usual.
    """
    attributes: dict[str, str | int] = {
        "service.name": os.environ.get("OTEL_SERVICE_NAME") or service,
        "service.version": version or tickbus_version(),
        "tickbus.version": tickbus_version(),
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
    }
    if actors:
        attributes["tickbus.actors"] = ",".join(actors)
    return Resource.create(attributes)


_REAL_TIME = {os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR"}


def real_time_scheduling() -> str | None:
    """``"SCHED_FIFO priority 20"`` when this thread runs in a real-time class (set by systemd's
    ``CPUSchedulingPolicy=`` or ``chrt``; deploy/README.md, "Lower tail latency"), else ``None``."""
    policy = os.sched_getscheduler(0)
    name = _REAL_TIME.get(policy)
    return None if name is None else f"{name} priority {os.sched_getparam(0).sched_priority}"


LOWEST_NICE = 19


def _threads(pid: int) -> list[int]:
    """The thread ids of ``pid`` (none once it ended)."""
    try:
        return [int(task) for task in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError):
        return []


def child_processes() -> list[int]:
    """The pids whose parent is this process (``tickbus profiler``: its Austin samplers)."""
    me, children = str(os.getpid()).encode(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()  # the name before it may hold anything
        except OSError:  # ended meanwhile
            continue
        if len(fields) > 1 and fields[1] == me:
            children.append(int(entry.name))
    return children


def _each_thread(pids: Iterable[int], move: Callable[[int], None]) -> None:
    """``move`` every thread of this process and of ``pids``, again for threads that a thread not yet
    moved started meanwhile (they inherit its old class), until none is new."""
    done: set[int] = set()
    processes = (os.getpid(), *pids)
    while todo := [tid for pid in processes for tid in _threads(pid) if tid not in done]:
        for tid in todo:
            done.add(tid)
            try:
                move(tid)
            except ProcessLookupError:  # a thread that ended meanwhile
                continue


def idle_scheduling(pids: Iterable[int] = ()) -> None:
    """Move every thread of this process (and of ``pids``) to ``SCHED_IDLE``, the class that runs only
    on CPU time every other process leaves; threads and child processes started later inherit it.

    For observers (``tickbus profiler`` and its Austin samplers): a burst of their work then never
    delays an actor's wake-up. Lowering needs no privilege; :class:`OSError` where the kernel has no
    such class.
    """
    if not hasattr(os, "SCHED_IDLE"):
        raise OSError("SCHED_IDLE is Linux's; this system has no such scheduling class")
    _each_thread(pids, lambda tid: os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0)))


def low_scheduling(pids: Iterable[int] = ()) -> None:
    """Move every thread of this process (and of ``pids``) to the normal class at its lowest priority,
    nice 19: it still yields to every other process, but gets a share of a saturated CPU, which
    ``SCHED_IDLE`` does not.

    From the normal class this needs no privilege. Out of ``SCHED_IDLE`` Linux asks for the right
    to run at nice 19: ``RLIMIT_NICE`` of at least 1 (systemd's ``LimitNICE=+19``) or CAP_SYS_NICE;
    :class:`PermissionError` without it.
    """

    def move(tid: int) -> None:
        os.setpriority(os.PRIO_PROCESS, tid, LOWEST_NICE)  # first: leaving SCHED_IDLE checks this nice
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))

    _each_thread(pids, move)
