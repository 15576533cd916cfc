"""A publisher process for the overload test: floods one key flat out while a second key ticks.

``python -m tests.system.integration.flood_publisher FRONTEND BACKEND SECONDS``: waits for a
subscriber of ``('flood', 'x')`` and ``('quiet', 'x')``, prints ``start``, then for SECONDS publishes
``('flood', 'x')`` as fast as it can, one ``('quiet', 'x')`` every 20 ms and one of ``RARE_KEYS``
keys ``('rare', N)`` every 5 ms, in turn (each every 2 s: at most one in a skim), payloads
``[seq, monotonic_ns]``, the time of the burst it went in. First one message on each rare key
(seq 0), then ``seeded``, and it waits for a line on stdin: a stream is counted from its first
message (one never seen could not be), so the test lets those arrive before the flood.
Then it prints ``done FLOOD QUIET DROPPED RARE RARE_DROPPED`` (how many of each were published,
the rare ones before the flood included; how many its send queue refused; how many rare ones it
refused) and stays connected, heartbeating, until stdin closes.
"""

from __future__ import annotations

import asyncio
import sys
import time

import actors

RARE_KEYS = 400
RARE_EVERY = 0.005  # seconds: 600 rare messages in a 3 s flood, each key every 2 s


async def main(frontend: str, backend: str, seconds: float) -> None:
    hub = await actors.connect(frontend, backend, name="flood", idle_heartbeat=0.05)
    flood, quiet = actors.Key("flood", "x"), actors.Key("quiet", "x")
    await hub.wait_for_subscribers(flood, timeout=20)
    await hub.wait_for_subscribers(quiet, timeout=20)
    await hub.wait_for_subscribers(actors.Key("rare", "0"), timeout=20)
    for n in range(RARE_KEYS):
        hub.publish(actors.Key("rare", str(n)), [0, time.monotonic_ns()])
    print("seeded", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    print("start", flush=True)
    floods = quiets = rares_dropped = 0
    rares = RARE_KEYS
    end = time.monotonic() + seconds
    next_quiet = next_rare = time.monotonic()
    while (now := time.monotonic()) < end:
        if now >= next_quiet:
            quiets += 1
            hub.publish(quiet, [quiets, time.monotonic_ns()])
            next_quiet += 0.02
        if now >= next_rare:
            rares += 1
            before = hub.statistics().publish_dropped
            hub.publish(actors.Key("rare", str(rares % RARE_KEYS)), [rares, time.monotonic_ns()])
            rares_dropped += hub.statistics().publish_dropped - before
            next_rare += RARE_EVERY
        sent = time.monotonic_ns()
        for _ in range(500):
            floods += 1
            hub.publish(flood, [floods, sent])
        await asyncio.sleep(0)  # the hub's own callbacks (subscriptions, heartbeats) still run
    print(f"done {floods} {quiets} {hub.statistics().publish_dropped} {rares} {rares_dropped}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    await hub.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
