"""Loop health probes against a real blocked loop: slow-callback warning, lag, hang stack dump."""

from __future__ import annotations

import asyncio
import time

import pytest
from loguru import logger

import observability
from actors import Actor, Hub, Key, handler


class Blocking(Actor):
    name = "blocker"

    @handler(("block",))
    def on_block(self, key, seconds):
        time.sleep(seconds)  # deliberately blocks the loop
        self.publish(("done",), seconds)


@pytest.fixture
def captured():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    yield lines
    logger.remove(sink)


async def _run_blocking(hub: Hub, seconds: float) -> Blocking:
    actor = Blocking(hub)
    done = asyncio.Event()
    hub.add_subscriber(Key("done"), lambda k, p, h: done.set())
    await actor.start()
    hub.publish(Key("block"), seconds)
    await asyncio.wait_for(done.wait(), seconds + 10)
    return actor


async def test_a_200ms_block_in_a_handler_gives_one_warning_naming_it_and_shows_in_lag(captured):
    observability.slow_callbacks.enable(0.05)
    observability.loop_lag.enable(0.02)
    try:
        await asyncio.sleep(0.1)  # a few clean lag samples first
        actor = await _run_blocking(Hub(), 0.2)
        await asyncio.sleep(0.05)  # let the lag probe take its late sample
        warnings = [line for line in captured if "slow callback" in line]
        assert len(warnings) == 1, warnings
        assert "blocker.on_block" in warnings[0] and "test_loop_health.py" in warnings[0]
        assert observability.slow_callbacks.statistics().worst_seconds >= 0.2
        lag = observability.loop_lag.statistics()
        assert lag.max >= 0.15 and lag.samples >= 3
        await actor.stop()
    finally:
        observability.slow_callbacks.disable()
        observability.loop_lag.disable()


class Earlier(Actor):
    name = "earlier"

    @handler(("early",))
    def on_early(self, key, seconds):
        time.sleep(seconds)  # slow while no watch runs
        self.publish(("done",), seconds)


async def test_a_handler_slow_before_the_watch_began_is_not_named_for_a_later_one(captured):
    # the slowest inline handler is kept until a report asks for it: one slower than the blocker,
    # from before the watch (a CI run: another test's handler), was named for the blocker's callback
    hub = Hub()
    earlier = Earlier(hub)
    done = asyncio.Event()
    hub.add_subscriber(Key("done"), lambda k, p, h: done.set())
    await earlier.start()
    hub.publish(Key("early"), 0.3)
    await asyncio.wait_for(done.wait(), 10)
    await earlier.stop()
    observability.slow_callbacks.enable(0.05)
    try:
        await asyncio.sleep(0.01)  # the next step of this task runs under the watch, not this one
        actor = await _run_blocking(hub, 0.2)
        warnings = [line for line in captured if "slow callback" in line]
        assert len(warnings) == 1 and "blocker.on_block" in warnings[0], warnings
        await actor.stop()
    finally:
        observability.slow_callbacks.disable()


async def test_a_3s_block_produces_a_stack_dump_containing_the_handler_frame():
    dumps: list[str] = []
    observability.hang_watchdog.enable(1.0, on_hang=dumps.append)
    try:
        actor = await _run_blocking(Hub(), 3.0)
        assert len(dumps) == 1
        assert "on_block" in dumps[0] and "time.sleep(seconds)" in dumps[0]
        await actor.stop()
    finally:
        observability.hang_watchdog.disable()


async def test_time_dilated_loop_runs_sleeps_faster():
    def run() -> float:
        loop = observability.TimeDilatedLoop(time_dilation=20.0)
        try:
            start = time.monotonic()
            loop.run_until_complete(asyncio.sleep(2.0))
            return time.monotonic() - start
        finally:
            loop.close()

    elapsed = await asyncio.get_running_loop().run_in_executor(None, run)
    assert elapsed < 0.5


async def test_slow_callbacks_log_once_per_interval_and_a_failing_hook_does_not_end_the_loop(captured):
    def hook(what: str, took: float) -> None:
        raise RuntimeError("bug in the hook")

    monitor = observability.slow_callbacks
    before = monitor.slow, monitor.hook_errors
    monitor.enable(0.02, on_slow=hook)
    try:
        loop = asyncio.get_running_loop()
        for _ in range(5):  # five slow callbacks in well under the 5 s interval
            loop.call_soon(time.sleep, 0.03)
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)  # the loop still turns after the hook raised five times
        assert (monitor.slow - before[0], monitor.hook_errors - before[1]) == (5, 5)
        firsts = [line.splitlines()[0] for line in captured]  # not the tracebacks' source lines
        assert len([line for line in firsts if "slow callback:" in line]) == 1, firsts
        assert len([line for line in firsts if "slow-callback hook failed" in line]) == 1, firsts
    finally:
        monitor.disable()


async def test_a_failing_hang_hook_leaves_the_watchdog_watching():
    dumps: list[str] = []

    def hook(dump: str) -> None:
        dumps.append(dump)
        raise RuntimeError("bug in the hook")

    watchdog = observability.hang_watchdog
    watchdog.enable(0.3, on_hang=hook)
    try:
        for _ in range(2):
            await asyncio.sleep(0.2)  # a beat between the hangs
            time.sleep(0.8)  # noqa: ASYNC251 -- deliberately blocks the loop
        assert len(dumps) == 2 and watchdog.hook_errors == 2
    finally:
        watchdog.disable()
