"""A hub on two brokers in its own process: ``python -m tests.system.integration.pair_victim FA BA FB BB``.

Connects to both brokers without waiting for either, subscribes to ``('t', *)``, prints ``ready``,
then one line ``received N`` each time the count of messages received changes, until it has 100.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import actors

WANTED = 100


async def main(frontend_a: str, backend_a: str, frontend_b: str, backend_b: str) -> None:
    hub = await actors.connect([frontend_a, frontend_b], [backend_a, backend_b], name="pair-victim", wait=None)
    got: list[Any] = []
    arrived = asyncio.Event()

    def on_message(_key: actors.Key, payload: Any) -> None:
        got.append(payload)
        arrived.set()

    actors.Subscriber(hub, "pair-victim").add_sync_listener(actors.Key("t", "*"), on_message)
    print("ready", flush=True)
    try:
        while len(got) < WANTED:
            await arrived.wait()
            arrived.clear()
            print(f"received {len(got)}", flush=True)
    finally:
        await hub.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
