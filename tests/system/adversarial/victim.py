"""A hub in its own process, for attacks whose cost must be measured as that process's memory.

``python -m tests.system.adversarial.victim FRONTEND BACKEND [MAX_REMOTE_SUBSCRIPTIONS]`` connects as
``victim``, subscribes to ``('t', '*')`` and answers lines on stdin with one JSON line each:

- ``stats``: its RSS (KiB), the hub's statistics, the legitimate messages it received and the highest
  sequence number seen from each legitimate publisher;
- ``publish N``: waits for a subscriber of ``('t', 'legit')`` and publishes N messages ``["legit", i]``;
- ``quit``: closes the hub and exits.

A legitimate message is a payload ``["legit", i]``; anything else on ``('t', *)`` is the attacker's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from typing import Any

import actors
from tests.system.chaos.chaos_actors import rss_kib


async def main(frontend: str, backend: str, max_remote: int) -> None:
    hub = await actors.connect(frontend, backend, name="victim", max_remote_subscriptions=max_remote)
    legit: list[int] = []

    def on_message(key: actors.Key, payload: Any) -> None:
        if type(payload) is list and len(payload) == 2 and payload[0] == "legit":
            legit.append(payload[1])

    actors.Subscriber(hub, "victim").add_sync_listener(actors.Key("t", "*"), on_message)
    await hub.sync()
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "stats":
            stats = dataclasses.asdict(hub.statistics())
            print(
                json.dumps(
                    {
                        "rss_kib": rss_kib(),
                        "legit": len(legit),
                        "legit_in_order": legit == sorted(legit),
                        **stats,
                    }
                ),
                flush=True,
            )
        elif line[0] == "publish":
            await hub.wait_for_subscribers(("t", "legit"), timeout=10)
            for i in range(int(line[1])):
                hub.publish(actors.Key("t", "legit"), ["legit", i])
            print(json.dumps({"published": int(line[1])}), flush=True)
    await hub.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 100_000))
