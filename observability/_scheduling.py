"""Scheduling classes: the one a service was started in (real time, by systemd or chrt), and the ones
``tickbus profiler`` moves itself and its Austin samplers between (``SCHED_IDLE``, and nice 19 when
its CPUs are saturated: tickbus/_scheduling.py decides), with the plain counters the metrics
exporter reads about the latter."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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


@dataclass
class SchedulingCounters:
    """The collector's scheduling class (``tickbus profiler``, tickbus/_scheduling.py): whether it
    watches for starvation, whether it is at nice 19 for it now, how many times it went there."""

    watching: bool = False
    starved: bool = False
    episodes: int = 0


profiler_scheduling = SchedulingCounters()
