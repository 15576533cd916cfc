"""A publisher process for the accounting tests: bursts 1 KB messages as fast as it can, then idles.

``python -m tests.system.adversarial.burst_publisher FRONTEND BACKEND COUNT``: for every line
``burst NAME`` on stdin, a new hub named NAME publishes COUNT messages on ``('t', 'x')`` flat out,
prints ``published NAME <id> COUNT`` and stays open (sending its idle heartbeats) until the next
line; ``quit`` ends it.
"""

from __future__ import annotations

import asyncio
import sys

import actors


async def main(frontend: str, backend: str, count: int) -> None:
    loop = asyncio.get_running_loop()
    hub: actors.RemoteHub | None = None
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if hub is not None:
            await hub.close()
            hub = None
        if not line or line[0] == "quit":
            return
        name = line[1]
        hub = await actors.connect(frontend, backend, name=name, idle_heartbeat=0.02, hwm=1_000)
        await hub.wait_for_subscribers(("t", "x"), timeout=10)
        key = actors.Key("t", "x")
        filler = "x" * 1000  # 20 MB a burst: far more than the socket buffers between the hubs hold
        for i in range(count):
            hub.publish(key, [i, filler])
            if i % 1000 == 999:
                await asyncio.sleep(0)  # let the hub's socket callbacks run; still flat out
        stats = hub.statistics()
        print(f"published {name} {hub.publisher_id} {count} dropped {stats.publish_dropped}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
