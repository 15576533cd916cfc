"""A hub's receive path and housekeeping survive what arrives (issue 11, part).

Malformed parts sent to a hub's snapshot inbox (whose key any peer can read from its heartbeats) and a
route that raises must neither leave the receive path nor stop the housekeeping timer: the hub keeps
delivering, keeps sending heartbeats, and counts what it dropped.
"""

from __future__ import annotations

import asyncio

import msgpack
import zmq
import zmq.asyncio
from loguru import logger

import actors
from actors.testing import BrokerProcess
from broker import LVC_INBOX, encode_header, encode_key, encode_message


async def test_malformed_inbox_parts_and_a_raising_route_do_not_deafen_the_hub():
    with BrokerProcess.start(extra_args=["--lvc", "*"]) as broker:
        victim = await actors.connect(broker.frontend, broker.backend, name="victim")
        feed = await actors.connect(broker.frontend, broker.backend, name="feed")
        ctx = zmq.asyncio.Context()
        rogue = ctx.socket(zmq.PUB)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(broker.frontend)
        received: list[int] = []
        arrived = asyncio.Event()

        def on_px(key, payload):
            received.append(payload["n"])
            if len(received) == 200:
                arrived.set()

        def raising_route(key, payload, header):
            raise RuntimeError("a route with a bug")

        try:
            actors.Subscriber(victim, "app").add_sync_listener(actors.Key("px", "*"), on_px)
            victim.add_subscriber(actors.Key("px", "*"), raising_route)
            await victim.snapshot(("px", "*"))  # subscribes the snapshot inbox
            await victim.sync()
            await feed.sync()
            inbox = encode_key((*LVC_INBOX, victim.publisher_id))
            hostile = [{"id": [1, 2]}, {"id": {"a": 1}}, 5, "x", {"id": "x", "part": 0, "parts": 10**9}]
            dropped: list[str] = []
            sink = logger.add(
                dropped.append,
                level="WARNING",
                filter=lambda r: "snapshot part" in r["message"],
            )
            try:
                # a PUB drops what no subscription it has heard of wants: send until the victim says
                # it dropped a part (proof that the hostile traffic reached it), 100 parts a round
                for round_ in range(200):
                    for n, payload in enumerate(hostile * 20):
                        await rogue.send(
                            encode_message(
                                inbox,
                                encode_header("rogue@h:1:t", round_ * 100 + n + 1, 1, 1),
                                msgpack.packb(payload),
                            )
                        )
                    if dropped:
                        break
                    await asyncio.sleep(0.05)
            finally:
                logger.remove(sink)
            assert dropped, "the hostile parts never reached the victim's inbox"
            heartbeats_before = victim.statistics().heartbeats
            for n in range(200):
                feed.publish(actors.Key("px", "a"), {"n": n})
                if n % 50 == 0:
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(arrived.wait(), 20)
            assert received == list(range(200))
            stats = victim.statistics()
            assert stats.listener_errors >= 200  # the raising route, counted per message
            # housekeeping still runs: the feed's heartbeats keep arriving at the victim
            for _ in range(100):
                if victim.statistics().heartbeats > heartbeats_before + 1:
                    break
                await asyncio.sleep(0.05)
            assert victim.statistics().heartbeats > heartbeats_before + 1
        finally:
            rogue.close()
            ctx.term()
            await feed.close()
            await victim.close()
