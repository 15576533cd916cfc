"""The collector's scheduling class: ``SCHED_IDLE`` while the host has CPU to spare, nice 19 when not.

At ``SCHED_IDLE`` ``tickbus profiler`` and its Austin samplers run only on CPU time nobody else wants,
so their bursts never delay an actor. On a saturated host there is none: measured with two busy loops
on two CPUs, the collector took 28 s to start and 25 s to stop after SIGTERM (systemd's
``TimeoutStopSec=20`` kills it, its ``WatchdogSec=30`` restarts it), blind exactly when the host is
busiest. So it starts at nice 19 (the normal class's lowest priority), lowers itself to ``SCHED_IDLE``
once ready, and :func:`keep_from_starving` watches a one-second timer of its loop and the idle time of
the CPUs it may run on: starved or saturated (:class:`Starvation`), the collector and its samplers go
back to nice 19 until those CPUs have had time to spare again; asked to stop, it stops at nice 19.
Leaving ``SCHED_IDLE`` needs ``RLIMIT_NICE`` >= 1 (``LimitNICE=+19`` in the unit) or CAP_SYS_NICE;
without, it says so once and stays.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from loguru import logger

from observability import child_processes, idle_scheduling, low_scheduling, profiler_scheduling

CHECK_EVERY = 1.0  # s between two looks at the loop's timer and the CPU time of the CPUs it may use
STARVED_LAG = 2.0  # s the timer may be late before the collector counts itself starved
SATURATED_CPU = 0.02  # the idle share of those CPUs below which they count as saturated...
SATURATED_FOR = 5.0  # ...when it lasts this many seconds: its samplers at SCHED_IDLE get nothing
SPARE_CPU = 0.1  # the idle share that lets the collector return to SCHED_IDLE...
RECOVER_AFTER = 30.0  # ...measured over this many seconds at nice 19


def cpu_ticks(cpus: Iterable[int], stat: Path = Path("/proc/stat")) -> tuple[int, int]:
    """(idle, total) clock ticks of ``cpus`` since boot, from ``/proc/stat``'s ``cpuN`` lines."""
    wanted = {f"cpu{n}" for n in cpus}
    idle = total = 0
    with stat.open(encoding="ascii") as f:
        for line in f:
            name, _, values = line.partition(" ")
            if name in wanted:  # user nice system idle iowait irq softirq steal (guest: within user)
                fields = [int(v) for v in values.split()[:8]]
                idle += fields[3] + fields[4]
                total += sum(fields)
    return idle, total


@dataclasses.dataclass
class Starvation:
    """When to leave ``SCHED_IDLE`` and when to return to it; fed a look every :data:`CHECK_EVERY`.

    Free of the OS: :meth:`observe` takes the timer's lag and the CPUs' ticks and answers
    ``"low"`` (go to nice 19), ``"idle"`` (back to ``SCHED_IDLE``) or ``None`` (stay); ``reason``
    says why it went low. At ``SCHED_IDLE`` either sign is enough: the loop's timer late by more than
    ``starved_lag``, or the CPUs it may run on idle less than ``saturated_cpu`` of the time for
    ``saturated_for`` seconds (measured: on a saturated host the collector's loop stays on time while
    its Austin samplers, also at ``SCHED_IDLE``, took 14 s to attach and stored one 2 s window in
    16 s). At nice 19 it waits for ``spare_cpu`` idle over ``recover_after`` seconds.
    """

    starved_lag: float = STARVED_LAG
    saturated_cpu: float = SATURATED_CPU
    saturated_for: float = SATURATED_FOR
    spare_cpu: float = SPARE_CPU
    recover_after: float = RECOVER_AFTER
    idle: bool = True
    episodes: int = 0
    reason: str = ""
    _looks: collections.deque[tuple[float, int, int]] = dataclasses.field(default_factory=collections.deque)

    def observe(self, now: float, lag: float, ticks: tuple[int, int]) -> str | None:
        """One look at ``now`` (s, monotonic): the timer ``lag`` s late, the CPUs' (idle, total) ticks."""
        looks = self._looks
        looks.append((now, *ticks))
        span = max(self.saturated_for, self.recover_after)
        while len(looks) > 2 and now - looks[1][0] >= span:
            looks.popleft()  # the oldest look kept is at least ``span`` old
        if self.idle:
            spare = self._idle_share(now, self.saturated_for)
            if lag <= self.starved_lag and (spare is None or spare >= self.saturated_cpu):
                return None
            self.idle = False
            self.episodes += 1
            self.reason = (
                f"its loop {lag:.1f} s late"
                if lag > self.starved_lag
                else f"its CPUs {spare:.1%} idle for {self.saturated_for:.0f} s"
            )
            decision = "low"
        else:
            spare = self._idle_share(now, self.recover_after)
            if spare is None or spare < self.spare_cpu:
                return None
            self.idle = True
            decision = "idle"
        while len(looks) > 1:  # a new state measures from now on
            looks.popleft()
        return decision

    def _idle_share(self, now: float, span: float) -> float | None:
        """The CPUs' idle share from the newest look at least ``span`` s old to the newest; ``None``
        before there is such a look."""
        _, idle, total = self._looks[-1]
        for then, idle0, total0 in reversed(self._looks):
            if now - then >= span:
                return (idle - idle0) / (total - total0) if total > total0 else None
        return None


async def keep_from_starving(stop: asyncio.Event, starvation: Starvation | None = None) -> None:
    """Watch the loop and the CPUs it may run on until ``stop`` is set, moving this process and its
    children between ``SCHED_IDLE`` and nice 19 as :class:`Starvation` says; once ``stop`` is set,
    move to nice 19 (the shutdown must not wait for a busy host) and return."""
    state = starvation or Starvation()
    loop = asyncio.get_running_loop()
    allowed, unreadable, fake = True, False, 0
    counters = profiler_scheduling  # the metrics exporter reads it: tickbus.profile.starved, ...
    counters.watching = True
    while True:
        started = loop.time()
        try:
            await asyncio.wait_for(stop.wait(), CHECK_EVERY)
        except TimeoutError:
            pass
        else:
            if state.idle and allowed:
                _move_low("stopping")
            return
        lag = loop.time() - started - CHECK_EVERY
        try:
            ticks = cpu_ticks(os.sched_getaffinity(0))
        except (OSError, ValueError, IndexError) as exc:  # no /proc/stat to read: judge by the lag alone
            if not unreadable:
                logger.info("profiler judges starvation by its loop alone: /proc/stat unreadable ({})", exc)
            unreadable, fake = True, fake + 1
            ticks = (fake, fake)  # as if idle: the lag alone sends it low, 30 s bring it back
        decision = state.observe(loop.time(), lag, ticks)
        if decision == "low" and allowed:
            allowed = _move_low(
                "starved at SCHED_IDLE",
                f" ({state.reason}; episode {state.episodes}): at nice 19 until its CPUs are "
                f"{state.spare_cpu:.0%} idle for {state.recover_after:.0f} s",
            )
            if allowed:
                counters.starved, counters.episodes = True, counters.episodes + 1
            else:
                state.idle = True  # stays where it is; not asked again
        elif decision == "idle":
            try:
                idle_scheduling(child_processes())
            except OSError as exc:  # cannot happen where it was at SCHED_IDLE before: say so, stay
                logger.warning("profiler stays at nice 19: {}", exc)
            else:
                counters.starved = False
                logger.info("profiler back at SCHED_IDLE: its CPUs have time to spare")


def _move_low(event: str, detail: str = "") -> bool:
    """Move this process and its children to nice 19, logging "profiler <event><detail>"; False
    (said once, with ``event`` only) where it may not.

    Logged at INFO: it is how the collector is meant to behave on saturated CPUs (the saturation itself
    shows in the actors' loop lag); outside systemd, without ``RLIMIT_NICE``, staying is normal too.
    """
    try:
        low_scheduling(child_processes())
    except PermissionError as exc:
        logger.info(
            "profiler {} but may not leave SCHED_IDLE ({}): allow nice 19 with LimitNICE=+19 "
            "(RLIMIT_NICE 1), as deploy/systemd/tickbus-profiler.service does",
            event,
            exc,
        )
        return False
    logger.info("profiler {}{}", event, detail)
    return True
