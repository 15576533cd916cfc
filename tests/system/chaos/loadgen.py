"""A paced publisher process for the chaos tier and the soak run.

``python -m tests.system.chaos.loadgen FRONTEND BACKEND --name feed --rate 5000 [--keys 4] [--hwm N]``

Waits until ``('load', 'k0')`` has a subscriber, prints ``loadgen ready <publisher id>``, then publishes
``rate`` messages a second round-robin over ``('load', 'k0')`` … with payload ``{"p": <publisher id>,
"i": n}``, paced against the clock (a late tick catches up, so the offered rate holds on average).

Its own log of what it published: on SIGUSR1 it stops publishing and prints ``loadgen stopped
<json>``: ``published`` (every publish call, each of which takes a sequence number, whether sent,
dropped at the high-water mark or skipped for want of a subscriber), ``per_key``, the hub's statistics
and ``timeline`` (publish calls per 100 ms of ``time.monotonic()``, a clock every process on the host
shares). It keeps running, so its idle heartbeats report its final sequence numbers, until SIGTERM;
then it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import faulthandler
import json
import signal
import time
from collections import Counter

import actors

_TICK = 0.005  # seconds between publishing bursts
_MAX_BURST = 1_000  # publishes per burst at most (a stalled loop does not flood at once)


async def main(args: argparse.Namespace) -> int:
    hub = await actors.connect(
        args.frontend, args.backend, name=args.name, hwm=args.hwm, idle_heartbeat=args.idle_heartbeat
    )
    loop = asyncio.get_running_loop()
    stop_publishing, stop = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, stop_publishing.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    keys = [actors.Key("load", f"k{i}") for i in range(args.keys)]
    per_key = [0] * len(keys)
    timeline: Counter[int] = Counter()
    try:
        await hub.wait_for_subscribers(keys[0], timeout=20)
        print(f"loadgen ready {hub.publisher_id}", flush=True)
        publish, publisher_id = hub.publish, hub.publisher_id
        start = time.monotonic()
        sent = 0
        while not stop_publishing.is_set():
            now = time.monotonic()
            due = min(int((now - start) * args.rate) - sent, _MAX_BURST)
            if due > 0 and args.timeline:
                timeline[int(now * 10)] += due
            for _ in range(due):
                slot = sent % len(keys)
                publish(keys[slot], {"p": publisher_id, "i": sent})
                per_key[slot] += 1
                sent += 1
            await asyncio.sleep(_TICK)
        report = {
            "publisher_id": publisher_id,
            "published": sent,
            "per_key": {"/".join(k): n for k, n in zip(keys, per_key, strict=True)},
            "hub": dataclasses.asdict(hub.statistics()),
            "timeline": sorted(timeline.items()),
        }
        print("loadgen stopped " + json.dumps(report), flush=True)
        await stop.wait()
    finally:
        await hub.close()
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.system.chaos.loadgen")
    parser.add_argument("frontend")
    parser.add_argument("backend")
    parser.add_argument("--name", default="feed")
    parser.add_argument("--rate", type=int, default=5_000, help="messages per second")
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--hwm", type=int, default=100_000)
    parser.add_argument("--idle-heartbeat", type=float, default=0.2)
    parser.add_argument(
        "--timeline", action=argparse.BooleanOptionalAction, default=True, help="keep publishes per 100 ms"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR2)  # a stack dump into its log, when a test says it hangs
    raise SystemExit(asyncio.run(main(parse())))
