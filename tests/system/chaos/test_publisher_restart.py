"""A publisher SIGKILLed mid-stream and restarted: a new incarnation, never a sequence error."""

from __future__ import annotations

import asyncio
import signal

from actors.testing import BrokerProcess, eventually
from tests.system.chaos.harness import LoadGen, account, assert_clean_exits, counting, wait_accounted

SUBSCRIBERS = ("sub-a", "sub-b")
CLEAN = {"gaps": 0, "duplicates": 0, "reordered": 0}


async def test_a_publisher_killed_and_restarted_is_a_new_incarnation_not_a_sequence_error(
    broker: BrokerProcess, figures
):
    async with counting(broker, SUBSCRIBERS) as (counters, observer):
        first = LoadGen.launch(broker, rate=5_000)
        second: LoadGen | None = None
        try:
            await eventually(
                lambda: all(
                    observer.reports[n]["received"].get(first.publisher_id, 0) > 2_000 for n in SUBSCRIBERS
                ),
                10,
                "the first incarnation's stream flowing",
            )
            first.proc.send_signal(signal.SIGKILL)  # mid-stream, no goodbye
            first.proc.wait(10)
            second = LoadGen.launch(broker, rate=5_000)  # same name and host: a new pid and token
            new_id = second.publisher_id
            assert new_id != first.publisher_id
            assert new_id.rsplit(":", 2)[0] == first.publisher_id.rsplit(":", 2)[0]
            await asyncio.sleep(1.0)
            second.halt()
            await wait_accounted(observer, SUBSCRIBERS, new_id, second.published)
            await eventually(
                lambda: all(f"restarted as {new_id}" in c.log() for c in counters.values()),
                5,
                "each subscriber logging the new incarnation",
            )
            for name in SUBSCRIBERS:
                report = observer.reports[name]
                old, new = account(report, first.publisher_id), account(report, new_id)
                figures(
                    f"{name}: first incarnation {old}, second {new} of {second.published} published, "
                    f"incarnations {report['hub']['incarnations']}"
                )
                assert report["hub"]["incarnations"] >= 1
                assert new["received"] == second.published
                assert {k: new[k] for k in CLEAN} == CLEAN
                assert old["duplicates"] == old["reordered"] == 0
                assert report["hub"]["duplicates"] == report["hub"]["reordered"] == 0
            assert_clean_exits(second, counters)
        finally:
            first.close()
            if second is not None:
                second.close()
