"""A message of many frames is skipped a slice at a time: the loop's other callbacks run between
the slices, the message is counted once, and the message after it is delivered (any peer may send
a million empty frames on a key hubs subscribe to; read at once, they held each hub's loop ~1 s)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import zmq

import actors
from actors.testing import BrokerProcess, eventually
from broker import encode_header, encode_key, encode_message

FRAMES = 200_000


def message(seq: int, payload: bytes) -> bytes:
    return encode_message(encode_key(("t", "x")), encode_header("rogue@h:1:a", seq, 1, 1), payload)


@pytest.mark.parametrize("brokers", [1, 2], ids=["one-broker", "broker-pair"])
async def test_a_message_of_many_frames_is_skipped_in_slices_and_the_next_one_delivered(brokers: int) -> None:
    with contextlib.ExitStack() as stack:
        started = [stack.enter_context(BrokerProcess.start()) for _ in range(brokers)]
        await _attack(started)


async def _attack(brokers: list[BrokerProcess]) -> None:
    """The many frames through the first broker, to a hub on all of them."""
    hub = await actors.connect(
        [broker.frontend for broker in brokers], [broker.backend for broker in brokers], name="victim"
    )
    got: list[Any] = []
    actors.Subscriber(hub, "victim").add_sync_listener(actors.Key("t", "*"), lambda _key, payload: got.append(payload))
    await hub.sync()
    ctx = zmq.Context()
    rogue = ctx.socket(zmq.XPUB)
    try:
        rogue.setsockopt(zmq.SNDHWM, 0)  # sends never block: the worker below always returns
        rogue.connect(brokers[0].frontend)
        # the hub's subscription, read on this thread: a worker left in a recv by a timed-out test
        # would have the socket closed under it (libzmq aborts the process)
        await eventually(lambda: rogue.poll(0) != 0 and rogue.recv() == b"\x01t\x00", 20, "the subscription")
        # the first frame a well-formed message (delivered: format 2 reads one frame at a time), then
        # 200,000 empty ones (refused, counted once), then the next message (delivered)
        await asyncio.to_thread(rogue.send_multipart, [message(1, b"\x01"), *[b""] * FRAMES])
        rogue.send(message(2, b"\x02"))
        during: list[int] = []  # loop turns while the refused message was counted and its frames read

        async def watch() -> None:
            while True:
                if hub.statistics().malformed and len(got) < 2:
                    during.append(len(got))
                await asyncio.sleep(0)

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await eventually(lambda: len(got) == 2, 60, "the message after the many frames")
        finally:
            watcher.cancel()
        assert got == [1, 2]
        stats = hub.statistics()
        assert stats.malformed == 1 and hub._inbound.malformed_by_reason == {"frames": 1}
        # read in one callback before: the loop never ran while the frames were read (0 turns);
        # now one slice of 1,000 frames a reader callback, one skip callback pending at most: ~190
        # turns (a callback per trigger, each re-queuing itself, made ~20 turns of ever more slices).
        # A turn may run a slice in each of its reader callbacks: the pending skip, each broker's
        # socket, the sweep, and one the reader queued for itself when behind (a CI-style run read
        # 99 turns with the broker pair, perhaps with another test of mine running beside it).
        least = FRAMES // 1_000 // (len(brokers) + 3)
        assert len(during) >= least, f"the loop turned {len(during)} times while {FRAMES:,} frames were read"
    finally:
        rogue.close(linger=0)
        ctx.term()
        await hub.close()
