"""10,000 malformed messages at the broker and a subscriber beside 10,000 good ones: all counted."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import msgpack
import zmq
import zmq.asyncio

import actors
from actors import encode_header
from actors.testing import BrokerProcess, eventually
from broker import encode_key, encode_message

GOOD = 10_000
BAD_DOWNSTREAM = 7_000  # sent into the frontend with the subscriber's prefix: reach the subscriber
BAD_UPSTREAM = 3_000  # sent into the backend by a raw XSUB peer: reach every publisher


def malformed_downstream(rng: random.Random, i: int) -> tuple[str, list[bytes]]:
    """(the reason the subscriber's hub must count, the frames): format 2 sends one frame a message."""
    key = b"t\x00x\x00"
    header = encode_header("raw", i + 1, 1, 1)
    shapes = [
        ("key", [key]),  # a bare key: no key end (0xff)
        ("frames", [key, msgpack.packb([1, "raw", i + 1, 1, 1, None]), b"\x80"]),  # a format-1 message
        # two frames (a first frame with a key end is the xfail test below)
        ("frames", [key, header + b"\x80"]),
        ("frames", [key, header, b"\x80", b"extra"]),
        # an unterminated, non-UTF-8 key (0xfe, not 0xff: that would end the key after t\0)
        (
            "key",
            [encode_message(b"t\x00\xfe" + rng.randbytes(5).replace(b"\xff", b"") + b"x", header, b"\x80")],
        ),
        ("header", [encode_message(key, b"\xc1" + rng.randbytes(11), b"\x80")]),  # format version 0xc1
        ("header", [encode_message(key, header[:-3], b"")]),  # cut short
        ("payload", [encode_message(key, header, b"\xc1" + rng.randbytes(5))]),  # 0xc1 is never msgpack
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
            reasons: Counter[str] = Counter()
            for i in range(GOOD):
                publisher.publish(("x",), i)
                if bad_down < BAD_DOWNSTREAM and i % 10 < 7:
                    reason, frames = malformed_downstream(rng, bad_down)
                    reasons[reason] += 1
                    await raw_pub.send_multipart(frames)
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
            assert stats.malformed_by_reason == dict(reasons)
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


async def test_frames_after_a_valid_first_frame_are_handled_one_by_one_and_still_filtered():
    """A documented trade-off (README "Limits and permissions"): a hub does not ask ZeroMQ whether more
    frames follow each one (a getsockopt per message costs ~0.35 us, a sixth of the receive path), so
    a multi-frame message whose first frame is a valid message is handled frame by frame. Frames after
    the first pass ZeroMQ's prefix filter unseen, but the hub's own subscription index still decides:
    one on a key nobody here subscribed is counted ``unmatched``, never delivered; junk is counted
    malformed. A checked broker (``--permissions``) refuses such messages before they reach anyone."""
    with BrokerProcess.start() as broker:
        hub = await actors.connect(broker.frontend, broker.backend, name="victim")
        ctx = zmq.asyncio.Context()
        rogue = ctx.socket(zmq.XPUB)  # an XPUB: to know that the victim's subscription arrived
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(broker.frontend)
        got: list[tuple[tuple[str, ...], object]] = []
        try:
            actors.Subscriber(hub, "s").add_sync_listener(
                actors.Key("t", "*"), lambda k, p: got.append((k, p))
            )
            await hub.sync()

            async def subscribed() -> None:
                while await rogue.recv() != b"\x01t\x00":
                    pass

            await asyncio.wait_for(subscribed(), 10)
            first = encode_message(encode_key(("t", "x")), encode_header("rogue@h:1:a", 1, 1, 1), b"\x01")
            unwanted = encode_message(encode_key(("u", "y")), encode_header("rogue@h:1:b", 1, 1, 1), b"\x02")
            await rogue.send_multipart([first, unwanted, b"junk"])
            await rogue.send(
                encode_message(encode_key(("t", "z")), encode_header("rogue@h:1:c", 1, 1, 1), b"\x03")
            )
            await eventually(lambda: any(k == ("t", "z") for k, _ in got), 10, "the message after it")
            stats = hub.statistics()
            assert stats.malformed_by_reason == {"key": 1} and stats.unmatched == 1
            assert got == [(("t", "x"), 1), (("t", "z"), 3)]
        finally:
            rogue.close(0)
            ctx.term()
            await hub.close()
