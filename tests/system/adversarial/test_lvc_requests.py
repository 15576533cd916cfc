"""Hostile snapshot requests against a real broker's last-value cache (issue 11).

A raw pyzmq publisher floods ``('$lvc', 'req')`` with requests naming inboxes nobody reads, from one
requester id and from made-up ones. The cache must keep answering a legitimate hub at once (the old
code waited up to 1 s per unread inbox, in line), stay bounded in memory, and count what it refused.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import zmq
import zmq.asyncio

import actors
from actors.testing import BrokerProcess, eventually
from broker import encode_header, encode_key, encode_message
from tests.system.chaos.chaos_actors import rss_kib

REQUEST = encode_key(("$lvc", "req"))
ATTACK = 1000


def request(requester: str, n: int) -> bytes:
    """One snapshot request, as the one frame of envelope format 2."""
    payload = {"id": f"r{n}", "pattern": ["px", "*"], "inbox": ["$lvc", "snap", f"unread-{requester}-{n}"]}
    return encode_message(REQUEST, encode_header(requester, n + 1, 1, 1), msgpack.packb(payload))


async def test_requests_to_unread_inboxes_never_stall_the_cache_and_are_bounded_and_counted():
    args = ["--lvc", "*", "--stats-interval", "0.05", "--lvc-inbox-wait", "30"]
    with BrokerProcess.start(extra_args=args) as broker:
        hub = await actors.connect(broker.frontend, broker.backend, name="legit")
        ctx = zmq.asyncio.Context()
        rogue = ctx.socket(zmq.PUB)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.setsockopt(zmq.SNDHWM, 0)
        rogue.connect(broker.frontend)
        latest: dict[str, Any] = {}
        hub.add_subscriber(("$broker", "stats"), lambda key, payload, header: latest.update(payload))
        try:
            await hub.sync()
            for n in range(200):
                hub.publish(actors.Key("px", str(n)), {"v": n})
            await eventually(lambda: (latest.get("lvc") or {}).get("keys") == 200, 10, "200 keys cached")
            rss_before = rss_kib(broker.proc.pid)

            # one requester: its burst (50) waits for inboxes nobody will ever subscribe, the rest is refused
            async with asyncio.timeout(10):  # a PUB drops what it has no subscription for yet: until seen
                while latest["lvc"]["pending"] == 0:
                    await rogue.send(request("rogue@h:1:t", 0))
                    await asyncio.sleep(0.01)
            for n in range(1, ATTACK):
                await rogue.send(request("rogue@h:1:t", n))
            await eventually(
                lambda: latest["lvc"]["pending"] + latest["lvc"]["rate_limited"] >= ATTACK - 5,
                10,
                "flood counted",
            )
            stats = dict(latest["lvc"])
            assert 1 <= stats["pending"] <= 64

            # while they wait, a legitimate snapshot is answered at once, with every key
            started = time.monotonic()
            snapshot = await hub.snapshot(("px", "*"), timeout=5)
            legit_s = time.monotonic() - started
            assert len(snapshot) == 200
            assert legit_s < 0.5, f"the legitimate snapshot took {legit_s:.3f} s"

            # made-up requester ids: the total rate and the bounded pending table hold
            for n in range(ATTACK):
                await rogue.send(request(f"fake{n}@h:1:t", n))
            await eventually(
                lambda: (
                    latest["lvc"]["rate_limited"] + latest["lvc"]["pending_full"]
                    >= stats["rate_limited"] + ATTACK - 64
                ),
                10,
                "fake-id flood counted",
            )
            after = dict(latest["lvc"])
            assert after["pending"] <= 64
            assert after["requesters"] <= 10_000
            rss_after = rss_kib(broker.proc.pid)

            # the cache still updates and answers (a refusal for the spent total rate is allowed, briefly)
            hub.publish(actors.Key("px", "new"), {"v": "new"})

            async def fresh() -> bool:
                try:
                    return any(m.key == ("px", "new") for m in await hub.snapshot(("px", "*"), timeout=5))
                except actors.SnapshotError:
                    return False

            deadline = asyncio.get_running_loop().time() + 10
            while not await fresh():
                assert asyncio.get_running_loop().time() < deadline, broker.log()[-2000:]
            assert broker.proc.poll() is None
            assert "last-value cache thread failed" not in broker.log()
            growth = rss_after - rss_before
            print(
                f"\nLVC flood: legit snapshot {legit_s * 1000:.1f} ms while {stats['pending']} pending; "
                f"broker RSS {rss_before} -> {rss_after} KiB (+{growth}); counters after one id: {stats}; "
                f"after made-up ids: {after}"
            )
            assert growth < 50 * 1024, f"broker RSS grew by {growth} KiB"
        finally:
            rogue.close()
            ctx.term()
            await hub.close()
