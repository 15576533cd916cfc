"""Killing the broker mid-stream: hubs reconnect by themselves and every lost message is a gap."""

from __future__ import annotations

import asyncio

import actors
from actors.testing import eventually
from tests.system.integration.outage import outage

RATE = 2_000  # messages per second while the broker is killed and restarted


async def test_broker_sigkill_and_restart_loses_only_counted_messages():
    async with outage(pub_hwm=200) as run:
        sub_hub, pub_hub, received = run.sub_hub, run.pub_hub, run.received
        publisher = actors.Publisher(pub_hub, ("t",))
        sent = 0

        async def publish_for(seconds: float) -> None:
            nonlocal sent
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                for _ in range(RATE // 100):
                    publisher.publish(("x",), sent)
                    sent += 1
                await asyncio.sleep(0.01)

        await publish_for(0.5)
        run.kill()
        await publish_for(0.5)  # into the void: the hubs notice the broker is gone
        restarted = run.restart()
        await eventually(lambda: sub_hub.connected and pub_hub.connected, 5, "both hubs reconnected")
        await pub_hub.wait_for_subscribers(("t", "x"), timeout=5)
        resumed = asyncio.get_running_loop().time() - restarted
        before = len(received)
        await publish_for(0.5)
        await eventually(lambda: received and received[-1] == sent - 1, 5, "the last message arrived")
        assert len(received) > before, "traffic resumed"
        assert resumed < 1.0, f"hubs took {resumed:.2f}s after the broker came back"
        stats = sub_hub.statistics()
        lost = sent - len(received)
        print(
            f"sent {sent}, received {len(received)}, lost {lost}, gaps {stats.gaps}, resumed in {resumed:.3f}s"
        )
        assert lost > 0 and pub_hub.statistics().publish_dropped > 0
        assert stats.gaps == lost
        assert received == sorted(received) and stats.duplicates == 0


async def test_messages_published_while_unsubscribed_are_not_gaps_after_resubscribing(tickbus_broker):
    sub_hub = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="sub")
    pub_hub = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="pub")
    try:
        sub = actors.Subscriber(sub_hub, "s")
        sub.subscribe(("t", "*"))
        await sub_hub.sync()
        await pub_hub.wait_for_subscribers(("t", "x"))
        pub_hub.publish(actors.Key("t", "x"), 1)
        assert await asyncio.wait_for(sub.consume(), 5) == (("t", "x"), 1)
        sub.unsubscribe(("t", "*"))
        await eventually(
            lambda: not pub_hub.has_subscribers(("t", "x")), 5, "unsubscription reached the publisher"
        )
        for i in range(2, 50):
            pub_hub.publish(actors.Key("t", "x"), i)  # nobody listens: skipped, numbered
        sub.subscribe(("t", "*"))
        await sub_hub.sync()
        await pub_hub.wait_for_subscribers(("t", "x"))
        pub_hub.publish(actors.Key("t", "x"), 50)
        assert await asyncio.wait_for(sub.consume(), 5) == (("t", "x"), 50)
        assert sub_hub.statistics().gaps == 0
        assert pub_hub.statistics().publish_skipped == 48
    finally:
        await sub_hub.close()
        await pub_hub.close()
