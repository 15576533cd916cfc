"""A hub's periodic safety drains find what its socket readers were not woken for.

ZeroMQ's descriptor is edge-triggered and a send or setsockopt may take an edge meant for the
reader (actors/_remote.py, ``_sweep``). Here the readers are removed altogether, as if every edge
were lost: the housekeeping sweep alone must still deliver the messages (SUB side) and take a new
subscriber's subscription (XPUB side, so that publishing reaches it).
"""

from __future__ import annotations

import asyncio

import actors
from actors.testing import BrokerProcess


async def test_messages_and_subscriptions_arrive_with_no_reader_woken():
    with BrokerProcess.start() as broker:
        feed = await actors.connect(broker.frontend, broker.backend, name="feed")
        deaf = await actors.connect(broker.frontend, broker.backend, name="deaf")
        loop = asyncio.get_running_loop()
        received: list[int] = []
        arrived = asyncio.Event()

        def on_px(key: actors.Key, payload: dict[str, int]) -> None:
            received.append(payload["n"])
            if len(received) == 100:
                arrived.set()

        try:
            # the feed hears no subscription from its XPUB's reader, the listener no message from
            # its SUB's reader: only the sweeps look at those sockets now
            for pub in feed._pubs:  # type: ignore[attr-defined]
                assert loop.remove_reader(pub.FD)
            for sub in deaf._subs:  # type: ignore[attr-defined]
                assert loop.remove_reader(sub.FD)
            actors.Subscriber(deaf, "app").add_sync_listener(actors.Key("px", "*"), on_px)
            await deaf.sync()
            # the feed learns of the subscription from a sweep only; then everything arrives
            await feed.wait_for_subscribers(actors.Key("px", "a"), timeout=20)
            for n in range(100):
                assert feed.publish(actors.Key("px", "a"), {"n": n}) == n + 1
            await asyncio.wait_for(arrived.wait(), 20)
            assert received == list(range(100))
            assert deaf.statistics().gaps == 0
        finally:
            await feed.close()
            await deaf.close()
