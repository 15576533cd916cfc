"""Senders with broken or hostile clocks, through a real broker (issue 11).

A raw pyzmq publisher sends messages whose headers say ``wall_ns = 0`` / ``mono_ns = 0`` (claiming
this host and another one) and times an hour in the future, beside a legitimate hub. The receiving
hub must not flag itself slow, must keep them out of its latency histogram, count them
(``skewed``), and deliver everything, the legitimate messages with their latencies.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import msgpack

import actors
from actors import Actor, Key, handler
from actors.testing import BrokerProcess, eventually
from broker import encode_header, encode_key, encode_message
from tests.system.adversarial.rogue import raw_publisher

HOUR_NS = 3600 * 1_000_000_000
ROUNDS = 500


class Sink(Actor):
    name = "sink"

    async def on_start(self) -> None:
        self.seen = 0

    @handler(("feed", "*"))
    def on_feed(self, key: Key, payload: Any) -> None:
        self.seen += 1


async def test_implausible_send_times_do_not_flag_the_hub_slow_and_are_counted():
    with BrokerProcess.start() as broker, raw_publisher(broker.frontend) as rogue:
        # "mono_ns = 0 on this host" is boot time: within the default hour of now on a machine
        # booted less than an hour ago (a fresh CI machine). Half the uptime makes it implausible
        # on any machine, and leaves the legitimate messages (milliseconds old) plausible.
        max_age = min(3600.0, time.monotonic() / 2)
        hub = await actors.connect(
            broker.frontend, broker.backend, name="clocks", slow_after=0.5, max_message_age=max_age
        )
        legit = await actors.connect(broker.frontend, broker.backend, name="legit")
        sink = Sink(hub)
        await sink.start()
        key = encode_key(Key("feed", "x"))
        here = f"rogue@{socket.gethostname()}:1:t"  # same host: lag from mono_ns
        try:
            await legit.wait_for_subscribers(Key("feed", "legit"))
            seqs: dict[str, int] = {}

            def frames(publisher: str, mono: int, wall: int) -> bytes:
                seq = seqs[publisher] = seqs.get(publisher, 0) + 1  # each its own stream: no gaps
                return encode_message(key, encode_header(publisher, seq, mono, wall), msgpack.packb(seq))

            async with asyncio.timeout(10):
                while sink.seen == 0:  # until the rogue's PUB heard the subscription
                    await rogue.send(frames("elsewhere@far:1:t", 0, 0))
                    await asyncio.sleep(0.01)  # resend until it arrives: a PUB drops what nobody wants yet
            for _ in range(ROUNDS):
                now_wall, now_mono = time.time_ns(), time.monotonic_ns()
                for publisher, mono, wall in (
                    ("elsewhere@far:1:t", 0, 0),  # wall_ns = 0
                    (here, 0, now_wall),  # mono_ns = 0 on this host
                    ("future@far:1:t", 0, now_wall + HOUR_NS),  # an hour ahead
                    (here.replace("rogue", "ahead"), now_mono + HOUR_NS, 0),
                ):
                    await rogue.send(frames(publisher, mono, wall))
                legit.publish(Key("feed", "legit"), "on time")  # alongside: a plausible latency each
                await asyncio.sleep(0.002)  # spread over several lag checks (every 100 ms)
            await eventually(lambda: sink.seen >= 5 * ROUNDS, 20, "every message delivered")
            # counted among the messages the actor times: at most one per 50 us (actors._actor)
            await eventually(lambda: hub.statistics().skewed >= 1, 5, "skewed counted")
            stats = hub.statistics()
            print(
                f"\nclock skew: {sum(seqs.values())} messages with implausible times; delivered {sink.seen}; skewed "
                f"{stats.skewed}; slow={stats.slow} slow_episodes={stats.slow_episodes} lag={stats.lag_seconds}; "
                f"latency samples {sink.latency_ns.count}"
            )
            assert not stats.slow and stats.slow_episodes == 0
            # the legitimate messages' latencies only (sampled): an implausible one would be an hour or years
            assert sink.latency_ns.count <= ROUNDS and sink.latency_ns.max < 10 * 10**9
        finally:
            await sink.stop(2)
            await legit.close()
            await hub.close()


async def test_send_times_seconds_old_but_plausible_do_not_flag_a_hub_that_keeps_up():
    # Within max_message_age a stamp is plausible, so only the hub's own backlog can tell a sender's
    # word from a real lag: without that check a peer stamping its messages 5 s old kept any hub that
    # subscribes flagged slow, and a slow hub stops reporting publishers gone.
    with BrokerProcess.start() as broker, raw_publisher(broker.frontend) as rogue:
        # 3 s: under the stamps' 5 s, and a loop stall that would count as a backlog here (slow_after / 2)
        # is out of reach of a loaded test machine
        hub = await actors.connect(broker.frontend, broker.backend, name="victim", slow_after=3.0)
        legit = await actors.connect(broker.frontend, broker.backend, name="legit")
        sink = Sink(hub)
        await sink.start()
        key = encode_key(Key("feed", "x"))
        seq = 0

        def stale(publisher: str) -> bytes:
            nonlocal seq
            seq += 1
            old = 5 * 1_000_000_000
            header = encode_header(publisher, seq, time.monotonic_ns() - old, time.time_ns() - old)
            return encode_message(key, header, msgpack.packb(seq))

        publisher = f"rogue@{socket.gethostname()}:1:t"
        try:
            await legit.wait_for_subscribers(Key("feed", "legit"))
            async with asyncio.timeout(10):
                while sink.seen == 0:  # until the rogue's PUB heard the subscription
                    await rogue.send(stale(publisher))
                    await asyncio.sleep(0.01)
            for i in range(300):  # 1.5 s: about 15 lag checks, most of them finding a stale message first
                await rogue.send(stale(publisher))
                if i % 10 == 0:
                    legit.publish(Key("feed", "legit"), i)
                await asyncio.sleep(0.005)
            await eventually(lambda: sink.seen >= 1 + 300 + 30, 10, "every message delivered")
            await eventually(lambda: hub.statistics().lag_unconfirmed >= 1, 5, "old stamps counted")
            stats = hub.statistics()
            print(
                f"\nstale stamps: {seq} messages stamped 5 s old; slow={stats.slow} episodes={stats.slow_episodes} "
                f"lag_unconfirmed={stats.lag_unconfirmed} lag={stats.lag_seconds:.2f} s gaps={stats.gaps}"
            )
            assert not stats.slow and stats.slow_episodes == 0
            assert stats.gaps == 0
            assert hub.skimmed == 0  # the old stamps alone discard nothing either (RemoteHub._behind)
        finally:
            await sink.stop(2)
            await legit.close()
            await hub.close()
