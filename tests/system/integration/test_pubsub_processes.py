"""Two processes using the aiopubsub API over a real broker: exact delivery, in publish order."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

import actors
from actors.testing import BrokerProcess

KEYS = [("quote", "XNAS", "AAPL"), ("quote", "XNAS", "MSFT"), ("quote", "XNYS", "IBM"), ("trade", "AAPL")]
PATTERNS = {
    "all-quotes": ("quote", "*"),
    "nasdaq": ("quote", "XNAS", "*"),
    "ibm": ("quote", "*", "IBM"),
    "aapl-quote": ("quote", "XNAS", "AAPL"),
    "trades": ("trade", "*"),
    "nothing": ("quote", "XNAS"),  # exact, matches no published key
}
COUNT = 4_000


@pytest.fixture(params=["tcp", "ipc"])
def broker(request):
    with BrokerProcess.start(transport=request.param) as running:
        yield running


async def test_every_message_reaches_exactly_the_matching_subscribers_in_publish_order(broker):
    hub = await actors.connect(broker.frontend, broker.backend, name="subscribers")
    received: dict[str, list[tuple]] = {name: [] for name in PATTERNS}
    done = asyncio.Event()
    try:
        for name, pattern in PATTERNS.items():
            sub = actors.Subscriber(hub, name)
            sub.add_sync_listener(
                actors.Key(*pattern), lambda k, p, name=name: received[name].append((k, p["i"]))
            )
        actors.Subscriber(hub, "done").add_sync_listener(actors.Key("done"), lambda k, p: done.set())
        await hub.sync()
        peer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.system.integration.peer",
            broker.frontend,
            broker.backend,
            str(COUNT),
            *[".".join(k) for k in KEYS],
            stdout=subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(peer.communicate(), 60)
        assert peer.returncode == 0
        await asyncio.wait_for(done.wait(), 20)
        published = [(KEYS[i % len(KEYS)], i) for i in range(COUNT)]
        for name, pattern in PATTERNS.items():
            expected = [(k, i) for k, i in published if actors.matches(k, pattern)]
            assert received[name] == expected, name
        stats = hub.statistics()
        assert (stats.gaps, stats.duplicates, stats.malformed) == (0, 0, 0)
        peer_stats = json.loads(out)
        assert peer_stats["published"] == COUNT + 1 and peer_stats["publish_dropped"] == 0
    finally:
        await hub.close()


async def test_connect_to_a_missing_broker_says_where_it_looked():
    with pytest.raises(actors.ConnectError, match=r"no broker answered at frontend 'tcp://127\.0\.0\.1:1'"):
        await actors.connect("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", wait=0.3)
