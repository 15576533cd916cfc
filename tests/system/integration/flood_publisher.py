"""A publisher process for the overload test: floods one key flat out while a second key ticks.

``python -m tests.system.integration.flood_publisher FRONTEND BACKEND SECONDS``: waits for a
subscriber of ``('flood', 'x')`` and ``('quiet', 'x')``, prints ``start``, then for SECONDS publishes
``('flood', 'x')`` as fast as it can and one ``('quiet', 'x')`` every 20 ms (payloads ``[seq, monotonic_ns]``,
the time of the burst it went in), prints
``done FLOOD QUIET`` (how many of each) and stays connected, heartbeating, until stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
import time

import actors


async def main(frontend: str, backend: str, seconds: float) -> None:
    hub = await actors.connect(frontend, backend, name="flood", idle_heartbeat=0.05)
    flood, quiet = actors.Key("flood", "x"), actors.Key("quiet", "x")
    await hub.wait_for_subscribers(flood, timeout=20)
    await hub.wait_for_subscribers(quiet, timeout=20)
    print("start", flush=True)
    floods = quiets = 0
    end = time.monotonic() + seconds
    next_quiet = time.monotonic()
    while (now := time.monotonic()) < end:
        if now >= next_quiet:
            quiets += 1
            hub.publish(quiet, [quiets, time.monotonic_ns()])
            next_quiet += 0.02
        sent = time.monotonic_ns()
        for _ in range(500):
            floods += 1
            hub.publish(flood, [floods, sent])
        await asyncio.sleep(0)  # the hub's own callbacks (subscriptions, heartbeats) still run
    print(f"done {floods} {quiets} {hub.statistics().publish_dropped}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await hub.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
