"""A real broker's last-value cache keeps answering after hostile requests and keys (issue 11)."""

from __future__ import annotations

import asyncio

import msgpack
import zmq
import zmq.asyncio

import actors
from actors.testing import BrokerProcess
from broker import encode_header, encode_key, encode_message

REQUEST = encode_key(("$lvc", "req"))


def _frames(key: bytes, payload: object) -> list[bytes]:
    """A message's one frame (envelope format 2), as a frame list like the malformed ones below."""
    return [encode_message(key, encode_header("rogue@h:1:t", 1, 1, 1), msgpack.packb(payload))]


async def test_the_cache_survives_nul_inboxes_undecodable_keys_and_nul_patterns():
    with BrokerProcess.start(extra_args=["--lvc", "*"]) as broker:
        hub = await actors.connect(broker.frontend, broker.backend, name="legit")
        ctx = zmq.asyncio.Context()
        rogue = ctx.socket(zmq.PUB)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(broker.frontend)
        try:
            await hub.sync()
            hub.publish(actors.Key("px", "a"), {"v": 1})
            for _ in range(200):  # cached: the cache is up
                if await hub.snapshot(("px", "*")):
                    break
                await asyncio.sleep(0.05)
            # (a request to an inbox nobody reads still stalls the cache 1 s each: open in issue 11)
            hostile = [
                _frames(REQUEST, {"id": "1", "pattern": ["px", "*"], "inbox": ["$lvc", "snap", "x\x00y"]}),
                _frames(REQUEST, {"id": "2", "pattern": ["p\x00x", "*"], "inbox": ["$lvc", "snap", "z"]}),
                _frames(b"px\x00\xfe\xfe\x00", {"v": "not utf-8"}),
                _frames(REQUEST, b"\xc1"),
                [encode_message(REQUEST, b"h", b"\xc1\xc1")],  # a header cut short
                [REQUEST + b"\xff\x02\x00\x05"],  # a header cut shorter still
                [REQUEST + b"\xff" + encode_header("rogue@h:1:t", 1, 1, 1)[:3] + b"\xff" * 40],  # runs past
                [REQUEST, encode_header("rogue@h:1:t", 1, 1, 1), b"\xc1"],  # format 1's three frames
                [REQUEST + b"\x00\x00"],  # no key end
            ]
            # a PUB drops what no subscription it has heard of wants: send until the cache says it
            # refused one (proof that the hostile traffic reached it), then 20 rounds more
            for _ in range(200):
                for frames in hostile:
                    await rogue.send_multipart(frames)
                if "refused a snapshot request" in broker.log():
                    break
                await asyncio.sleep(0.05)
            assert "refused a snapshot request" in broker.log(), "the hostile requests never arrived"
            for _ in range(20):
                for frames in hostile:
                    await rogue.send_multipart(frames)
            hub.publish(actors.Key("px", "b"), {"v": 2})
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                snapshot = await hub.snapshot(("px", "*"))
                keys = sorted(tuple(m.key) for m in snapshot)
                if ("px", "b") in keys or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert keys == [("px", "a"), ("px", "b")], broker.log()[-2000:]
            assert broker.proc.poll() is None
            assert "last-value cache thread failed" not in broker.log()
        finally:
            rogue.close()
            ctx.term()
            await hub.close()
