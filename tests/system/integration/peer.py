"""A publisher process for integration tests: ``python -m tests.system.integration.peer FRONTEND BACKEND N KEY...``.

Waits until every key has a subscriber, publishes N messages round-robin over the keys with
payload ``{"i": i}``, then one ``("done",)`` marker, and prints its statistics as one JSON line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

import actors


async def main(frontend: str, backend: str, count: int, keys: list[tuple[str, ...]]) -> None:
    hub = await actors.connect(frontend, backend, name="peer")
    try:
        for key in [*keys, ("done",)]:
            await hub.wait_for_subscribers(key, timeout=20)
        publisher = actors.Publisher(hub, ())
        for i in range(count):
            publisher.publish(keys[i % len(keys)], {"i": i})
            if i % 500 == 499:
                await asyncio.sleep(0)  # let the loop flush and read subscription changes
        publisher.publish(("done",), {"count": count})
        print(json.dumps(dataclasses.asdict(hub.statistics())), flush=True)
    finally:
        await hub.close()


if __name__ == "__main__":
    front, back, n, *raw_keys = sys.argv[1:]
    asyncio.run(main(front, back, int(n), [tuple(k.split(".")) for k in raw_keys]))
