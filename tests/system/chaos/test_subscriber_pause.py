"""A subscriber stopped with SIGSTOP for 5 s under a 5,000 msgs/s load, then resumed."""

from __future__ import annotations

import asyncio
import signal
import time

from actors.testing import BrokerProcess
from tests.system.chaos.harness import (
    LoadGen,
    account,
    assert_clean_exits,
    counting,
    in_window,
    wait_accounted,
)

OTHERS = ("steady-a", "steady-b")
PAUSED = "paused"
PAUSE = 5.0


async def test_a_paused_subscriber_does_not_slow_the_others_its_drops_are_counted_and_it_is_flagged_slow(
    broker: BrokerProcess, figures
):
    async with counting(broker, (*OTHERS, PAUSED)) as (counters, observer):
        load = LoadGen.launch(broker, rate=5_000)
        try:
            await asyncio.sleep(PAUSE)  # the reference window: as long as the pause, undisturbed
            counters[PAUSED].signal(signal.SIGSTOP)
            stopped = time.monotonic()
            await asyncio.sleep(PAUSE)
            counters[PAUSED].signal(signal.SIGCONT)
            resumed = time.monotonic()
            await asyncio.sleep(2.0)  # the paused one works through its backlog under live load
            load.halt()
            await wait_accounted(observer, counters, load.publisher_id, load.published, timeout=20)

            # delivered against offered, before and during the pause: robust to a loaded machine
            offered_before = in_window(load.report["timeline"], stopped - PAUSE, stopped)
            offered_during = in_window(load.report["timeline"], stopped, resumed)
            for name in OTHERS:
                timeline = observer.reports[name]["timeline"]
                before = in_window(timeline, stopped - PAUSE, stopped) / offered_before
                during = in_window(timeline, stopped, resumed) / offered_during
                figures(
                    f"{name}: delivered/offered {before:.4f} before the pause, {during:.4f} during it "
                    f"({offered_during} offered in {resumed - stopped:.2f} s)"
                )
                assert during >= 0.95 * before, f"{name} kept {during / before:.1%} of its rate"
            seen = account(observer.reports[PAUSED], load.publisher_id)
            hub = observer.reports[PAUSED]["hub"]
            events = [(e["hub"], e["state"], round(e["lag_seconds"], 2)) for e in observer.slow_events]
            figures(
                f"{PAUSED}: published {load.published}, {seen}, slow episodes {hub['slow_episodes']}, "
                f"slow events {events}"
            )
            assert seen["received"] + seen["gaps"] + seen["dropped"] == load.published
            assert seen["duplicates"] == seen["reordered"] == 0
            assert all(h == PAUSED for h, _, _ in events), "only the paused one was flagged"
            assert_clean_exits(load, counters)
            flagged = any(h == PAUSED and state == "slow" and lag > 1.0 for h, state, lag in events)
            assert flagged and hub["slow_episodes"] >= 1, f"{PAUSED} was not flagged slow: {events}"
        finally:
            load.close()
