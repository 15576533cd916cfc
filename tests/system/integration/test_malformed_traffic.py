"""10,000 malformed messages at the broker and a subscriber beside 10,000 good ones: all counted."""

from __future__ import annotations

import asyncio
import random

import zmq
import zmq.asyncio

import actors
from actors import encode_header
from actors.testing import BrokerProcess, eventually

GOOD = 10_000
BAD_DOWNSTREAM = 7_000  # sent into the frontend with the subscriber's prefix: reach the subscriber
BAD_UPSTREAM = 3_000  # sent into the backend by a raw XSUB peer: reach every publisher


def malformed_downstream(rng: random.Random, i: int) -> list[bytes]:
    key = b"t\x00x\x00"
    header = encode_header("raw", i + 1, 1, 1)
    shapes = [
        [key],
        [key, header],
        [key, header, b"\x80", b"extra"],
        [b"t\x00\xff" + rng.randbytes(5) + b"x", header, b"\x80"],  # unterminated, non-UTF-8 key
        [key, b"\xc1" + rng.randbytes(11), b"\x80"],  # 0xc1 is never valid msgpack
        [key, header, b"\xc1" + rng.randbytes(5)],
    ]
    return shapes[i % len(shapes)]


async def test_malformed_frames_are_counted_and_good_traffic_all_arrives():
    rng = random.Random(7)
    with BrokerProcess.start() as broker:
        sub_hub = await actors.connect(broker.frontend, broker.backend, name="sub")
        pub_hub = await actors.connect(broker.frontend, broker.backend, name="pub")
        ctx = zmq.asyncio.Context()
        raw_pub = ctx.socket(zmq.PUB)
        raw_pub.setsockopt(zmq.SNDHWM, 100_000)
        raw_pub.connect(broker.frontend)
        raw_xsub = ctx.socket(zmq.XSUB)
        raw_xsub.setsockopt(zmq.SNDHWM, 100_000)
        raw_xsub.connect(broker.backend)
        got: list[int] = []
        all_good = asyncio.Event()

        def on_good(key, payload):
            got.append(payload)
            if len(got) == GOOD:
                all_good.set()

        try:
            actors.Subscriber(sub_hub, "s").add_sync_listener(actors.Key("t", "*"), on_good)
            await sub_hub.sync()
            await pub_hub.wait_for_subscribers(("t", "x"))
            await asyncio.sleep(0.2)  # raw PUB has no way to learn that its subscription arrived
            publisher = actors.Publisher(pub_hub, ("t",))
            bad_down = bad_up = 0
            for i in range(GOOD):
                publisher.publish(("x",), i)
                if bad_down < BAD_DOWNSTREAM and i % 10 < 7:
                    await raw_pub.send_multipart(malformed_downstream(rng, bad_down))
                    bad_down += 1
                elif bad_up < BAD_UPSTREAM:
                    await raw_xsub.send(b"\x07" + rng.randbytes(8))
                    bad_up += 1
                if i % 200 == 0:
                    await asyncio.sleep(0)
            await asyncio.wait_for(all_good.wait(), 30)

            await eventually(
                lambda: (
                    sub_hub.statistics().malformed >= BAD_DOWNSTREAM
                    and pub_hub.statistics().malformed_upstream >= BAD_UPSTREAM
                ),
                20,
                "all malformed messages counted",
            )
            assert got == list(range(GOOD))
            stats = sub_hub.statistics()
            assert stats.malformed == BAD_DOWNSTREAM
            good_publisher = [
                p for p in sub_hub.sequence_tracker().publishers() if p.publisher == pub_hub.publisher_id
            ]
            assert good_publisher == [] or good_publisher[0].gaps == 0
            assert pub_hub.statistics().malformed_upstream == BAD_UPSTREAM
            assert broker.proc.poll() is None
        finally:
            raw_pub.close(0)
            raw_xsub.close(0)
            ctx.term()
            await sub_hub.close()
            await pub_hub.close()
