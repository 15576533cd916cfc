"""The broker SIGKILLed under a 5,000 msgs/s load and restarted on the same endpoints."""

from __future__ import annotations

import asyncio
import signal
import time

from actors.testing import BrokerProcess, eventually
from tests.system.chaos.harness import LoadGen, account, assert_clean_exits, counting, wait_accounted

SUBSCRIBERS = ("sub-a", "sub-b")


async def test_broker_killed_under_load_every_lost_message_is_a_gap_and_actors_resume_within_a_second(
    broker: BrokerProcess, figures
):
    restarted: BrokerProcess | None = None
    async with counting(broker, SUBSCRIBERS) as (counters, observer):
        # a small send queue: what the publisher sends while the broker is down is lost, not delayed
        load = LoadGen.launch(broker, rate=5_000, extra=["--hwm", "500"])
        try:
            before = {n: sum(observer.reports[n]["received"].values()) for n in SUBSCRIBERS}
            await asyncio.sleep(1.0)  # a second of steady load before the kill (no event marks "steady")
            broker.signal(signal.SIGKILL)
            broker.proc.wait(10)
            killed = time.monotonic()
            await asyncio.sleep(0.5)  # the publisher keeps publishing into the outage
            restarted = BrokerProcess.launch([broker.frontend], [broker.backend])
            back = time.monotonic()

            def resumed(name: str) -> float | None:
                """Seconds from the broker's return to the counter's first message after the silence."""
                later = [t for t in observer.reports[name]["resumes"] if t > killed]
                return later[0] - back if later else None

            await eventually(
                lambda: all(resumed(n) is not None for n in SUBSCRIBERS), 10, "every subscriber resumed"
            )
            await asyncio.sleep(1.0)  # a second of load after the restart
            sender = load.halt()["hub"]
            skipped, dropped = sender["publish_skipped"], sender["publish_dropped"]
            await wait_accounted(observer, SUBSCRIBERS, load.publisher_id, load.published)
            for name, counter in counters.items():
                assert counter.proc.poll() is None, f"{name} crashed:\n{counter.log()[-2000:]}"
                seen = account(observer.reports[name], load.publisher_id)
                lost, delay = load.published - seen["received"], resumed(name)
                assert delay is not None
                figures(
                    f"{name}: published {load.published}, received {seen['received']}, lost {lost}, gaps "
                    f"{seen['gaps']}, mailbox drops {seen['dropped']}, resumed {delay:.3f} s after the broker "
                    f"returned; publisher skipped {skipped}, dropped {dropped} (send queue full)"
                )
                assert seen["received"] > before[name], "traffic flowed"
                assert lost > 0, "the outage lost messages (else this test proves nothing)"
                assert seen["gaps"] + seen["dropped"] == lost
                assert seen["duplicates"] == seen["reordered"] == 0
                assert delay < 1.0, f"{name} resumed {delay:.2f} s after the broker came back"
            assert_clean_exits(load, counters)
        finally:
            load.close()
            if restarted is not None:
                restarted.close()
