"""Hostile traffic against a hub: payload bombs, made-up publishers, forged sequence numbers, and a
subscription flood. Each from a raw pyzmq peer on a real broker, each asserting that the victim hub
(its own process) survives, that its memory stays within the configured bounds (RSS), that the
attack is counted, and that legitimate traffic alongside loses nothing (issue 11)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgpack
import pytest
import zmq
import zmq.asyncio

import actors
from actors.testing import BrokerProcess, eventually
from broker import encode_header, encode_key, encode_message
from tests.system.chaos.chaos_actors import rss_kib

LEGIT = 2_000
MIB = 1024


@pytest.fixture
async def rogue(broker_process: BrokerProcess) -> AsyncIterator[zmq.asyncio.Socket]:
    """A raw XPUB on the broker's frontend, returned once the victim's ('t', *) subscription reached it."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(broker_process.frontend)
    try:
        yield sock
    finally:
        sock.close(0)
        ctx.term()


async def wait_for_subscription(sock: zmq.asyncio.Socket, prefix: bytes) -> None:
    async def loop() -> None:
        while (await sock.recv()) != b"\x01" + prefix:
            pass

    await asyncio.wait_for(loop(), 20)


def frames(publisher: str, seq: int, payload: bytes, key: tuple[str, ...] = ("t", "x")) -> bytes:
    """One message's single frame (envelope format 2)."""
    return encode_message(encode_key(key), encode_header(publisher, seq, 1, 1), payload)


async def legit_traffic(broker: BrokerProcess, count: int = LEGIT) -> actors.RemoteHub:
    hub = await actors.connect(broker.frontend, broker.backend, name="legit")
    await hub.wait_for_subscribers(("t", "legit"), timeout=10)
    for i in range(count):
        hub.publish(actors.Key("t", "legit"), ["legit", i])
        if i % 500 == 499:
            await asyncio.sleep(0.01)
    return hub


async def test_payload_bombs_are_refused_before_they_cost_memory(broker_process, victim_factory, rogue):
    victim = await victim_factory()
    await wait_for_subscription(rogue, b"t\x00")
    before = await victim.stats()
    # 1.5 MiB of empty maps: ~100 MB of dicts if decoded; under the broker's 2 MiB frame limit, over
    # the hub's 1 MiB max_payload (the 4 MiB frames no longer pass the broker at all)
    too_big = 3 * 512 * 1024 - 5
    under_limit = 900_000  # under max_payload, but 900,000 maps: over the container budget
    for seq in range(1, 7):
        await rogue.send(frames("rogue@h:1:a", seq, b"\xdd" + too_big.to_bytes(4, "big") + b"\x80" * too_big))
    for seq in range(7, 27):
        await rogue.send(
            frames("rogue@h:1:a", seq, b"\xdd" + under_limit.to_bytes(4, "big") + b"\x80" * under_limit)
        )
    hub = await legit_traffic(broker_process)
    try:
        for _ in range(600):
            after = await victim.stats()
            reasons = after["malformed_by_reason"]
            if (
                reasons.get("oversize", 0) >= 6
                and reasons.get("payload", 0) >= 20
                and after["legit"] == LEGIT
            ):
                break
            await asyncio.sleep(0.05)
        grown = after["rss_kib"] - before["rss_kib"]
        print(
            f"payload bombs: victim RSS {before['rss_kib'] // MIB} -> {after['rss_kib'] // MIB} MiB, "
            f"oversize {reasons.get('oversize')}, over budget {reasons.get('payload')}, legit {after['legit']}/{LEGIT}"
        )
        assert reasons.get("oversize") == 6 and reasons.get("payload") == 20
        assert after["legit"] == LEGIT and after["legit_in_order"]
        assert grown < 64 * MIB, f"the victim grew {grown // MIB} MiB"  # unbounded: +630 MB measured before
    finally:
        await hub.close()


async def test_made_up_publishers_with_sequence_jumps_cost_bounded_memory(
    broker_process, victim_factory, rogue
):
    victim = await victim_factory()
    await wait_for_subscription(rogue, b"t\x00")
    before = await victim.stats()
    payload = msgpack.packb(["forged", 0])
    ids = 5_000
    for n in range(ids):
        publisher = f"forged{n}@h:1:{n:x}"
        await rogue.send(frames(publisher, 1, payload))
        await rogue.send(frames(publisher, 1 + 1_000_000, payload))
    hub = await legit_traffic(broker_process)
    try:
        await eventually_stats(
            victim, lambda s: s["received"] - before["received"] >= 2 * ids + LEGIT, "all traffic"
        )
        after = await victim.stats()
        grown = after["rss_kib"] - before["rss_kib"]
        print(
            f"5,000 made-up ids with jumps: victim RSS {before['rss_kib'] // MIB} -> {after['rss_kib'] // MIB} MiB, "
            f"streams {after['streams']}, legit {after['legit']}/{LEGIT}"
        )
        assert after["legit"] == LEGIT and after["legit_in_order"]
        assert grown < 64 * MIB, f"the victim grew {grown // MIB} MiB"  # +320 MB measured before the bounds
    finally:
        await hub.close()


async def test_a_forged_sequence_jump_under_a_real_id_does_not_deafen_its_stream(
    broker_process, victim_factory, rogue
):
    victim = await victim_factory()
    await wait_for_subscription(rogue, b"t\x00")
    hub = await legit_traffic(broker_process, 100)
    try:
        await eventually_stats(victim, lambda s: s["legit"] == 100, "the first 100 legitimate messages")
        # the attacker read the real publisher's id from any of its messages' headers
        await rogue.send(
            frames(hub.publisher_id, 100 + 1_000_000, msgpack.packb(["forged", 0]), key=("t", "legit"))
        )
        # counted as 10^6 gaps, until the real publisher's next heartbeat or message takes it back
        await eventually_stats(
            victim, lambda s: s["gaps"] >= 1_000_000 or s["implausible"], "the forged jump"
        )
        for i in range(100, 200):
            hub.publish(actors.Key("t", "legit"), ["legit", i])
        await eventually_stats(victim, lambda s: s["legit"] == 200, "the next 100 legitimate messages")
        after = await victim.stats()
        print(
            f"forged jump of 10^6: legit {after['legit']}/200, gaps {after['gaps']}, "
            f"duplicates {after['duplicates']}, implausible {after['implausible']}"
        )
        assert after["legit_in_order"]
        assert (after["gaps"], after["duplicates"], after["implausible"]) == (0, 0, 1)
    finally:
        await hub.close()


async def test_a_subscription_flood_is_bounded_in_every_hub(broker_process, victim_factory):
    victim = await victim_factory("10000")  # stores at most 10,000 of the bus's subscriptions
    listener = await actors.connect(broker_process.frontend, broker_process.backend, name="listener")
    got: list[int] = []
    actors.Subscriber(listener, "l").add_sync_listener(
        actors.Key("t", "legit"), lambda k, p: got.append(p[1])
    )
    await listener.sync()
    ctx = zmq.asyncio.Context()
    flood = ctx.socket(zmq.SUB)
    flood.setsockopt(zmq.LINGER, 0)
    flood.setsockopt(zmq.SNDHWM, 0)  # else libzmq drops subscriptions past 1,000 queued
    flood.connect(broker_process.backend)
    try:
        before, broker_before = await victim.stats(), rss_kib(broker_process.proc.pid)
        for n in range(50_000):
            flood.setsockopt(zmq.SUBSCRIBE, b"flood\x00" + f"{n:094d}".encode())  # 100-byte prefixes
        await eventually_stats(
            victim, lambda s: s["subscriptions_refused"] >= 40_000, "the flood", timeout=120
        )
        after = await victim.stats()
        assert await victim.ask("publish 1000") == {"published": 1000}
        await eventually(lambda: len(got) == 1000, 20, "the legitimate messages")
        grown = after["rss_kib"] - before["rss_kib"]
        broker_grown = rss_kib(broker_process.proc.pid) - broker_before
        print(
            f"50,000 subscriptions from one client: victim hub RSS +{grown // MIB} MiB "
            f"(refused {after['subscriptions_refused']}), broker RSS +{broker_grown // MIB} MiB, legit {len(got)}/1000"
        )
        assert got == list(range(1000))
        assert grown < 32 * MIB, f"the victim hub grew {grown // MIB} MiB"  # +167 MB measured before
    finally:
        flood.close(0)
        ctx.term()
        await listener.close()


async def eventually_stats(victim, predicate, what: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        stats = await victim.stats()
        if predicate(stats):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"{what} did not show in the victim's statistics within {timeout} s: {stats}"
            )
        await asyncio.sleep(0.05)
