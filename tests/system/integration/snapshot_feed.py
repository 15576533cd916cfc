"""A paced feed for snapshot tests: ``python -m tests.system.integration.snapshot_feed FRONTEND BACKEND RATE SECONDS KEYS``.

Publishes ``('px', 'k<n>')`` round-robin at RATE messages/s for SECONDS, each payload the running
message number, prints ``started`` once publishing began and, at the end, its final state (the last
payload per key) and statistics as one JSON line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

import actors


async def main(frontend: str, backend: str, rate: int, seconds: float, keys: int) -> None:
    hub = await actors.connect(frontend, backend, name="feed")
    final: dict[str, int] = {}
    try:
        await hub.wait_for_subscribers(("px", "k0"), timeout=20)  # the broker's cache, at least
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        print("started", flush=True)
        while (now := loop.time()) < start + seconds:
            due = int((now - start) * rate)
            while sent < due:
                name = f"k{sent % keys}"
                hub.publish(actors.Key("px", name), sent)
                final[name] = sent
                sent += 1
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.2)  # let the last ones leave
        print(json.dumps({"final": final, "stats": dataclasses.asdict(hub.statistics())}), flush=True)
    finally:
        await hub.close()


if __name__ == "__main__":
    front, back, rate_s, seconds_s, keys_s = sys.argv[1:]
    asyncio.run(main(front, back, int(rate_s), float(seconds_s), int(keys_s)))
