"""Helpers of the live detection tests: a model actor process, a tick driver and an in-process
collector sampling fast (1 kHz) into short windows, so that a regression shows within seconds."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import actors
from actors.testing import ActorProcess, BrokerProcess
from broker import ACTORS
from observability.profiling import DetectionConfig, ProfileStore, ProfileWindow, Regression
from tests.system.profiling.model_actor import burst_size
from tickbus.collector import Profiler, ProfilerConfig

MODEL = "tests.system.profiling.model_actor:Model"
WINDOW = 3.0
# Austin 3.7 here samples evenly at 1 kHz: between windows a function's count then varies no more than
# binomially (measured over-dispersion 0.4-0.6). Faster, its samples come in runs (at 800 us: 2.0,
# at 400 us: 2.7, with the target alone on its core), and fewer effective samples remain than at 1 kHz.
INTERVAL_US = 1000
NOISE_CAUSES = (
    "other processes preempting the target, or samples in step with the model's ticks, which last about "
    "Austin's 1 ms interval (an idle VM read 1.6-7.7x: CHANGELOG, sessions 34-35)"
)
"""What a skip for sampling noise names as its likely causes."""
# Austin 3's CPU mode counts a runnable thread as running: when other processes preempt the target,
# every sample of the wait goes to the function it was preempted in, in runs of tens of samples, and
# on two busy cores that noise is as large as a 10 % regression. A raised priority keeps the target
# on a core, as a production trading actor usually is; its Austin and the collector (this process:
# when it falls behind, Austin blocks on the pipe and loses samples) get the same.
TARGET_NICE = -10
# Better still, as on a trading server (isolcpus, CPUAffinity=): the target alone on the last core,
# and everything else (this process and its collector, the target's Austin, the broker) on the others.
_ALL_CPUS = frozenset(os.sched_getaffinity(0))
TARGET_CPUS = {max(_ALL_CPUS)} if len(_ALL_CPUS) >= 2 else set(_ALL_CPUS)
OTHER_CPUS = set(_ALL_CPUS - TARGET_CPUS) or set(_ALL_CPUS)


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` (0: this process) on ``cpus`` (affinity is per thread)."""
    try:
        threads = [int(t) for t in os.listdir(f"/proc/{pid or os.getpid()}/task")]
    except OSError:
        threads = [pid]
    for tid in threads:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


async def drive(hub: actors.RemoteHub, rates: list[int], stop: asyncio.Event) -> None:
    """Publish ``('tick', 'x')`` at ``rates[-1]`` messages per second until stopped.

    Bursts of ticks (:func:`~tests.system.profiling.model_actor.burst_size`) at random gaps (exponential):
    regular bursts would make the work periodic, and a periodic workload beats with the sampler's
    fixed interval. The bursts keep their schedule: one whose time passed while this process waited
    for its core (it shares one with the collector, the broker and Austin) is sent as soon as it runs,
    so that the rate sent is the rate asked on a loaded machine too (a CI run once sent 72 % of it,
    and the phases' loads were not the ones the test meant). A lag over a second is not caught up.
    """
    rng = random.Random(7)
    i = 0
    rate, burst, due = 0, 1, 0.0
    while not stop.is_set():
        now = time.monotonic()
        if rates[-1] != rate:  # a new rate: its schedule starts now
            rate, burst, due = rates[-1], burst_size(rates[-1]), now
        due = max(due, now - 1.0)
        while due <= now:
            for _ in range(burst):
                hub.publish(actors.Key("tick", "x"), i)
                i += 1
            due += rng.expovariate(rate / burst)
        await asyncio.sleep(due - now)


@dataclass
class LiveRun:
    """A model actor under a driver and an in-process collector; what the collector found."""

    broker: BrokerProcess
    data_dir: Path
    hub: actors.RemoteHub
    profiler: Profiler
    rates: list[int]
    alerts: list[Regression] = field(default_factory=list)
    windows: list[ProfileWindow] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # (arrival time, messages the model actor handled so far) from its group's statistics, ~1 a second
    handled_log: list[tuple[float, int]] = field(default_factory=list)

    def control(self, what: str, payload: object) -> None:
        """Send ``('control', what)`` to the model actor."""
        self.hub.publish(actors.Key("control", what), payload)

    async def wait_windows(self, count: int, timeout: float) -> None:
        """Wait until ``count`` more windows of the model are stored."""
        target = len(self.windows) + count
        async with asyncio.timeout(timeout):
            while len(self.windows) < target:
                self.changed.clear()
                await self.changed.wait()

    async def wait_until(self, done: Callable[[], bool], timeout: float, reached: Callable[[], str]) -> None:
        """Wait until ``done()`` holds, checked as windows and statistics arrive; after ``timeout``
        seconds raise :class:`TimeoutError` with ``reached()``, which says what was reached instead."""
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise TimeoutError(reached()) from None

    async def sync(self, timeout: float) -> dict[str, object]:
        """Wait until the model handled everything sent before (an ask waits in its mailbox behind
        them): a switch sent by :meth:`control` has taken effect. The model's state then."""
        return await actors.ask(self.hub, actors.Key("control", "sync"), None, timeout=timeout)

    def handled_between(self, start: float, end: float) -> int | None:
        """Messages the model handled from ``start`` to ``end``, interpolated between its statistics;
        ``None`` unless statistics arrived before ``start`` and after ``end``."""
        log = self.handled_log
        if not log or not log[0][0] <= start <= end <= log[-1][0]:
            return None
        return round(_interpolate(log, end) - _interpolate(log, start))

    def _on_stats(self, key: actors.Key, payload: object) -> None:
        model = payload.get("actors", {}).get("model") if isinstance(payload, dict) else None
        if isinstance(model, dict) and isinstance(model.get("handled"), int):
            self.handled_log.append((time.time(), model["handled"]))
            self.changed.set()

    def stored(self) -> list[ProfileWindow]:
        """The model's windows in the store."""
        with ProfileStore(self.data_dir / "profiles.sqlite", create=False) as store:
            return store.windows(actor="model")


def _interpolate(log: list[tuple[float, int]], t: float) -> float:
    """The cumulative count of ``log`` (sorted by time) at ``t``, linear between its points."""
    i = min(max(bisect.bisect_left(log, (t,)), 1), len(log) - 1)
    (t0, n0), (t1, n1) = log[i - 1], log[i]
    return n0 if t1 <= t0 else n0 + (n1 - n0) * (t - t0) / (t1 - t0)


async def _raise_austin_priority(profiler: Profiler, pid: int) -> None:
    """Give the target's Austin the target's priority (TARGET_NICE) once it runs."""
    for _ in range(200):
        sampler = profiler.sampler(pid)
        austin = sampler.statistics().austin_pid if sampler is not None else None
        if austin is not None:
            with contextlib.suppress(PermissionError, ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, austin, TARGET_NICE)
            _pin(austin, OTHER_CPUS)
            return
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def live_model(  # noqa: PLR0917
    broker: BrokerProcess,
    data_dir: Path,
    rate: int,
    detection: DetectionConfig | None = None,
    window: float = WINDOW,
    self_driven: bool = False,
) -> AsyncIterator[LiveRun]:
    """Start the model actor, the driver at ``rate`` and the collector; stop them all on exit.

    ``self_driven``: the model ticks itself at ``rate`` instead (no driver traffic through the broker).
    """
    async with contextlib.AsyncExitStack() as cleanup:  # every step runs, even after one failed
        yield await _start(cleanup, broker, data_dir, rate, detection, window, self_driven)


async def _start(  # noqa: PLR0917
    cleanup: contextlib.AsyncExitStack,
    broker: BrokerProcess,
    data_dir: Path,
    rate: int,
    detection: DetectionConfig | None,
    window: float,
    self_driven: bool,
) -> LiveRun:
    """:func:`live_model`'s start; each part registers its own stop on ``cleanup``."""
    own_nice, own_cpus = os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0)

    def restore() -> None:
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, own_nice)
        _pin(0, set(own_cpus))

    cleanup.callback(restore)
    with contextlib.suppress(PermissionError):  # the collector runs here: it must keep up with Austin
        os.setpriority(os.PRIO_PROCESS, 0, TARGET_NICE)
    model = ActorProcess.launch(broker, MODEL, name="model")
    cleanup.callback(model.close)
    with contextlib.suppress(PermissionError):  # as root: see TARGET_NICE
        os.setpriority(os.PRIO_PROCESS, model.proc.pid, TARGET_NICE)
    _pin(model.proc.pid, TARGET_CPUS)
    _pin(broker.proc.pid, OTHER_CPUS)
    _pin(0, OTHER_CPUS)
    hub = await actors.connect(broker.frontend, broker.backend, name="driver")
    cleanup.push_async_callback(hub.close)
    config = ProfilerConfig(
        broker.frontend,
        broker.backend,
        window=window,
        interval_us=INTERVAL_US,
        data_dir=data_dir,
        detection=detection or DetectionConfig(),
    )
    profiler = Profiler(config)
    run = LiveRun(broker, data_dir, hub, profiler, [rate])
    profiler.on_alert = run.alerts.append
    actors.Subscriber(hub, "handled").add_sync_listener(actors.Key(ACTORS, "stats", "model"), run._on_stats)
    save = profiler._save

    def saved(windows: list[ProfileWindow]) -> None:
        save(windows)
        run.windows.extend(w for w in windows if w.labels.group == "model")
        run.changed.set()

    profiler._save = saved  # type: ignore[method-assign]
    stop, stop_driving = asyncio.Event(), asyncio.Event()
    collecting = asyncio.create_task(profiler.run(stop))
    renice = asyncio.create_task(_raise_austin_priority(profiler, model.proc.pid))

    async def stop_collecting() -> None:
        renice.cancel()
        stop.set()
        await asyncio.wait_for(collecting, 30)

    cleanup.push_async_callback(stop_collecting)
    if self_driven:
        await hub.sync()
        run.control("drive", {"rate": rate})
        return run
    driving = asyncio.create_task(drive(hub, run.rates, stop_driving))

    async def stop_driver() -> None:
        stop_driving.set()
        await asyncio.gather(driving, return_exceptions=True)

    cleanup.push_async_callback(stop_driver)
    return run
