"""A flood of subscriptions from the bus is read in time slices: the loop's other callbacks run
between them (a peer that subscribes and unsubscribes without end reaches every publisher)."""

from __future__ import annotations

import asyncio
import time

import zmq

import actors
from actors.testing import BrokerProcess, eventually
from broker import encode_key

PREFIXES = 30_000


async def test_a_flood_of_bus_subscriptions_is_read_in_slices_the_loop_running_between(
    tickbus_broker: BrokerProcess,
) -> None:
    hub = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="pub")
    ctx = zmq.Context()
    peer = ctx.socket(zmq.SUB)
    try:
        stored = hub._wanted.prefixes
        before = len(stored)
        peer.setsockopt(zmq.SNDHWM, 0)  # libzmq drops subscriptions past the send queue's bound
        peer.connect(tickbus_broker.backend)
        for i in range(PREFIXES):
            peer.setsockopt(zmq.SUBSCRIBE, encode_key(("churn", f"k{i}")))
        # the loop is busy elsewhere meanwhile: every subscription waits in the hub's socket
        time.sleep(1.0)  # noqa: ASYNC251 -- blocking the loop on purpose
        seen: list[int] = []

        async def watch() -> None:
            while True:
                seen.append(len(stored) - before)
                await asyncio.sleep(0)

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await eventually(lambda: len(stored) - before >= PREFIXES, 30, "every subscription stored")
        finally:
            watcher.cancel()
        between = [n for n in seen if 0 < n < PREFIXES]
        # read in one callback before: the loop saw 0, then all of them
        assert between, f"the loop ran only before and after the {PREFIXES} subscriptions"
        assert hub.subscription_slices > 0
    finally:
        peer.close(linger=0)
        ctx.term()
        await hub.close()
