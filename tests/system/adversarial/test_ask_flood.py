"""A flood of asks whose replies nobody can receive, against a real answering process (issue 11).

A raw pyzmq publisher sends requests to ``('svc', 'price')`` naming 40,000 different inboxes nobody
subscribes, each with a deadline an hour away. The answerer used to hold a task per reply until the
deadline (20,000 of them pinned 61 MB); now it holds at most ``max_pending_asks`` (10,000), each for
5 s at most, drops the rest (counted) and keeps answering a legitimate asker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import zmq
import zmq.asyncio

import actors
from actors import Subscriber, ask
from actors.testing import ActorProcess, BrokerProcess
from tests.system.chaos.chaos_actors import rss_kib

PRICER = "tests.system.integration.ask_actors:Pricer"
FLOOD, BATCH = 40_000, 2_000
REQUEST = actors.Key("$ask", "svc", "price")


def flood_request(n: int) -> bytes:
    from broker import encode_header, encode_key, encode_message

    deadline = time.time_ns() + 3600 * 1_000_000_000
    payload = {"reply_to": f"nobody-{n}", "id": n, "deadline": deadline, "payload": {"qty": 1, "n": n}}
    return encode_message(
        encode_key(REQUEST), encode_header("rogue@h:1:t", n + 1, 1, 1), msgpack.packb(payload)
    )


async def test_asks_naming_unread_inboxes_hold_bounded_memory_and_legit_asks_are_answered():
    with BrokerProcess.start() as broker:
        pricer = ActorProcess.launch(broker, PRICER, name="pricing")
        hub = await actors.connect(broker.frontend, broker.backend, name="asker")
        reports = Subscriber(hub, "reports")
        reports.subscribe(("$actors", "stats", "pricing"))
        ctx = zmq.asyncio.Context()
        rogue = ctx.socket(zmq.PUB)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.setsockopt(zmq.SNDHWM, 0)
        rogue.connect(broker.frontend)
        try:
            await hub.wait_for_subscribers(REQUEST, 10)
            assert (await ask(hub, ("svc", "price"), {"qty": 2, "n": -1}, timeout=10))["px"] == 3.0
            rss_before = rss_kib(pricer.proc.pid)

            async def report() -> dict[str, Any]:
                return (await asyncio.wait_for(reports.consume(), 5))[1]

            async with asyncio.timeout(10):  # the rogue's PUB must hear the answerer's subscription first
                while (await report())["ask"]["replies_waiting"] == 0:
                    await rogue.send(flood_request(0))
            answered = 0
            for start in range(1, FLOOD, BATCH):
                for n in range(start, min(start + BATCH, FLOOD)):
                    await rogue.send(flood_request(n))
                reply = await ask(
                    hub, ("svc", "price"), {"qty": 1, "n": start}, timeout=10
                )  # behind the batch
                answered += reply["n"] == start
            async with asyncio.timeout(15):  # the group reports every second: until the flood is handled
                while (stats := await report())["ask"]["requests_handled"] < FLOOD // 2:
                    pass
            rss_after = rss_kib(pricer.proc.pid)
            ask_stats, mailbox = stats["ask"], stats["actors"]["pricer"]
            growth = rss_after - rss_before
            print(
                f"\nask flood: {FLOOD} requests; answerer RSS {rss_before} -> {rss_after} KiB (+{growth}); "
                f"requests_handled={ask_stats['requests_handled']} replies_waiting={ask_stats['replies_waiting']} "
                f"replies_dropped={ask_stats['replies_dropped']} mailbox_dropped={mailbox['dropped']}; "
                f"legit asks answered {answered}/{len(range(1, FLOOD, BATCH))}"
            )
            assert answered == len(range(1, FLOOD, BATCH))
            assert ask_stats["replies_waiting"] <= 10_000
            assert ask_stats["replies_dropped"] >= ask_stats["requests_handled"] - 10_000 - 40
            assert growth < 60 * 1024, f"the answerer's RSS grew by {growth} KiB"
            async with asyncio.timeout(20):  # a far deadline no longer pins a reply: 5 s at most
                while (await report())["ask"]["replies_waiting"]:
                    pass
            assert pricer.proc.poll() is None
        finally:
            rogue.close()
            ctx.term()
            await hub.close()
            assert pricer.close() == 0
