"""A broker that a test kills and restarts, between a subscriber hub and a publisher hub on ``('t', *)``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import actors
from actors.testing import BrokerProcess


@dataclass
class Outage:
    """The broker process, the two hubs, and the payloads the subscriber received, in order."""

    broker: BrokerProcess
    sub_hub: actors.RemoteHub
    pub_hub: actors.RemoteHub
    received: list[Any] = field(default_factory=list)

    def kill(self) -> None:
        """SIGKILL the broker and wait until it is gone."""
        self.broker.signal(signal.SIGKILL)
        self.broker.proc.wait(10)

    def restart(self) -> float:
        """Start a broker on the same endpoints; returns the loop time at which it was ready."""
        self.broker.close()
        self.broker = BrokerProcess.launch([self.broker.frontend], [self.broker.backend])
        return asyncio.get_running_loop().time()


@contextlib.asynccontextmanager
async def outage(pub_hwm: int) -> AsyncIterator[Outage]:
    """A broker and both hubs, subscribed and ready; ``pub_hwm`` is the publisher's send queue.

    A connecting ZeroMQ socket queues what it sends while its peer is gone, so with the default
    high-water mark much of an outage is delivered late. A small one makes loss certain.
    """
    broker = BrokerProcess.launch()
    sub_hub = await actors.connect(broker.frontend, broker.backend, name="sub")
    pub_hub = await actors.connect(broker.frontend, broker.backend, name="pub", hwm=pub_hwm)
    run = Outage(broker, sub_hub, pub_hub)
    try:
        actors.Subscriber(sub_hub, "s").add_sync_listener(
            actors.Key("t", "*"), lambda k, p: run.received.append(p)
        )
        await sub_hub.sync()
        await pub_hub.wait_for_subscribers(("t", "x"))
        yield run
    finally:
        await sub_hub.close()
        await pub_hub.close()
        run.broker.close()
