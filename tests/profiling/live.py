"""Helpers of the live detection tests: a model actor process, a tick driver and an in-process
collector sampling fast (2.5 kHz) into short (3 s) windows, so that a regression shows within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import actors
from actors.testing import ActorProcess, BrokerProcess
from observability import Profiler, ProfilerConfig, ProfileStore, ProfileWindow
from observability._regression import DetectionConfig, Regression

MODEL = "tests.profiling.model_actor:Model"
WINDOW = 3.0
INTERVAL_US = 400
# Austin 3's CPU mode counts a runnable thread as running: when other processes preempt the target,
# every sample of the wait goes to the function it was preempted in, in runs of tens of samples, and
# on two busy cores that noise is as large as a 10 % regression. A raised priority keeps the target
# on a core, as a production trading actor usually is; its Austin and the collector (this process:
# when it falls behind, Austin blocks on the pipe and loses samples) get the same.
TARGET_NICE = -10


async def drive(hub: actors.RemoteHub, rates: list[int], stop: asyncio.Event) -> None:
    """Publish ``('tick', 'x')`` at ``rates[-1]`` messages per second until stopped.

    Pairs of ticks at random gaps (exponential, mean 2 / rate): regular bursts would make the work
    periodic, and a periodic workload beats with the sampler's fixed interval.
    """
    rng = random.Random(7)
    i = 0
    while not stop.is_set():
        for _ in range(2):
            hub.publish(actors.Key("tick", "x"), i)
            i += 1
        await asyncio.sleep(rng.expovariate(rates[-1] / 2))


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

    def stored(self) -> list[ProfileWindow]:
        """The model's windows in the store."""
        with ProfileStore(self.data_dir / "profiles.sqlite", create=False) as store:
            return store.windows(actor="model")


async def _raise_austin_priority(profiler: Profiler, pid: int) -> None:
    """Give the target's Austin the target's priority (TARGET_NICE) once it runs."""
    for _ in range(200):
        sampler = profiler.sampler(pid)
        austin = sampler.statistics().austin_pid if sampler is not None else None
        if austin is not None:
            with contextlib.suppress(PermissionError, ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, austin, TARGET_NICE)
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
    own_nice = os.getpriority(os.PRIO_PROCESS, 0)
    with contextlib.suppress(PermissionError):  # the collector runs here: it must keep up with Austin
        os.setpriority(os.PRIO_PROCESS, 0, TARGET_NICE)
    model = ActorProcess.launch(broker, MODEL, name="model")
    with contextlib.suppress(PermissionError):  # as root: see TARGET_NICE
        os.setpriority(os.PRIO_PROCESS, model.proc.pid, TARGET_NICE)
    hub = await actors.connect(broker.frontend, broker.backend, name="driver")
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
    save = profiler._save

    def saved(windows: list[ProfileWindow]) -> None:
        save(windows)
        run.windows.extend(w for w in windows if w.labels.group == "model")
        run.changed.set()

    profiler._save = saved  # type: ignore[method-assign]
    stop, stop_driving = asyncio.Event(), asyncio.Event()
    collecting = asyncio.create_task(profiler.run(stop))
    renice = asyncio.create_task(_raise_austin_priority(profiler, model.proc.pid))
    if self_driven:
        await hub.sync()
        run.control("drive", {"rate": rate})
        driving = asyncio.create_task(stop_driving.wait())
    else:
        driving = asyncio.create_task(drive(hub, run.rates, stop_driving))
    try:
        yield run
    finally:
        stop_driving.set()
        await asyncio.gather(driving, return_exceptions=True)
        renice.cancel()
        stop.set()
        await asyncio.wait_for(collecting, 30)
        await hub.close()
        model.close()
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, own_nice)
