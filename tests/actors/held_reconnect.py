"""A hub held through a burst, its loop stalled or not, then read.

``python -m tests.actors.held_reconnect MODE FRONTENDS BACKENDS`` (comma-separated, one per broker): a
victim hub with a small queue (100 messages) and a short heartbeat (0.1 s, timing out after 0.3 s)
stops reading (``hold``) while a feed publishes 5,000 messages. Its queue fills and libzmq stops
reading the connection, the heartbeat's answers with it.

- ``stall``: the victim's loop then stalls for 1 s (a long handler, say): the heartbeat times out,
  the connection is lost and libzmq makes it again. Once it is back the victim reads on. On
  libzmq's own reconnection that read aborted the process (``Assertion failed: _input_stopped
  (src/stream_engine_base.cpp:396)``): see ``actors._connections.BrokerConnections._renew_sub``.
- ``hold``: the victim stays held for 1.5 s, its loop free: its skims (``RemoteHub._skim``) keep
  the connection (and its heartbeat) alive.

Then the feed publishes one message every 50 ms until one reaches the victim, and 10 more, and the script prints one JSON line: what the victim got, its gaps,
disconnects, replaced sockets and skimmed messages.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import actors
from actors.testing import eventually

BURST = 5_000
AFTER = 10


async def main(mode: str, frontends: list[str], backends: list[str]) -> None:
    # no hub heartbeats meanwhile: a message arriving once the connection is back would stop the
    # new connection's reading first, and hide what the read does on its own
    victim = await actors.connect(
        frontends,
        backends,
        name="victim",
        hwm=100,
        heartbeat_ivl=0.1,
        heartbeat_timeout=0.3,
        idle_heartbeat=60,
    )
    feed = await actors.connect(frontends, backends, name="feed", idle_heartbeat=60)
    got: list[int] = []
    actors.Subscriber(victim, "sink").add_sync_listener(actors.Key("md", "*"), lambda _key, n: got.append(n))
    await victim.sync()
    key = actors.Key("md", "x")
    await feed.wait_for_subscribers(key, timeout=20)
    feed.publish(key, 0)
    await eventually(lambda: got == [0], 20, "the first message")
    token = object()
    victim.hold(token)
    for n in range(1, BURST + 1):
        feed.publish(key, n)
    if mode == "stall":
        time.sleep(1.0)  # noqa: ASYNC251 -- the loop stalls: nothing of the hub runs meanwhile
        await eventually(lambda: victim.statistics().disconnects >= len(backends), 30, "the connection lost")
        await eventually(lambda: victim.connected, 30, "the victim's connection made again")
    else:
        await asyncio.sleep(1.5)
    victim.release(token)  # libzmq's own reconnection: the process aborted in this read
    # the new socket's subscriptions reach the broker some time after the release: probe until one
    # message published after it arrives (the ones before it are gaps, counted like any other)
    last = BURST
    deadline = time.monotonic() + 20
    while not (got and got[-1] > BURST):
        assert time.monotonic() < deadline, f"nothing after the release (got {got[-3:]})"
        last += 1
        feed.publish(key, last)
        await asyncio.sleep(0.05)
    for _ in range(AFTER):
        last += 1
        feed.publish(key, last)
    await eventually(lambda: got[-1] == last, 20, f"the last message (got {got[-3:]})")
    stats = victim.statistics()
    print(
        json.dumps(
            {
                "got": len(got),
                "gaps": stats.gaps,
                "published": last + 1,
                "disconnects": stats.disconnects,
                "renewed": victim.renewed,
                "skimmed": victim.skimmed,
                "last": got[-1],
            }
        ),
        flush=True,
    )
    await feed.close()
    await victim.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")))
