"""A hub closes its sockets on the loop's own thread: a task still publishing while it closes gets a
clear error, never a socket used by two threads at once. Closed in an executor thread, a publish
between its steps aborted the process in libzmq (`Assertion failed: pfd.revents & POLLIN
(src/signaler.cpp:238)`, once in ~3,000 closes measured; a CI run ended so)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

import actors
from actors.testing import BrokerProcess, eventually


@pytest.mark.parametrize("brokers", [1, 2], ids=["one-broker", "broker-pair"])
async def test_a_publish_racing_close_gets_a_clear_error_and_the_sockets_are_closed_at_once(
    brokers: int,
) -> None:
    with contextlib.ExitStack() as stack:
        started = [stack.enter_context(BrokerProcess.start()) for _ in range(brokers)]
        hub = await actors.connect(
            [b.frontend for b in started], [b.backend for b in started], name="closing"
        )
        got: list[int] = []
        actors.Subscriber(hub, "self").add_sync_listener(actors.Key("t", "*"), lambda _key, n: got.append(n))
        await hub.sync()
        hub.publish(actors.Key("t", "x"), 0)
        await eventually(lambda: got == [0], 10, "the message before closing")

        closing = asyncio.get_running_loop().create_task(hub.close())
        await asyncio.sleep(0)  # close() ran up to its first wait: no socket may be left to another thread
        sockets = [*hub._pubs, *hub._subs, *hub._monitors]
        assert all(sock.closed for sock in sockets), "sockets still open while close() waits"
        with pytest.raises(actors.ConnectError, match="hub 'closing' is closed"):
            hub.publish(actors.Key("t", "x"), 1)
        await closing
        with pytest.raises(actors.ConnectError, match="is closed"):
            hub.publish(actors.Key("t", "x"), 2)
        with pytest.raises(actors.ConnectError, match="is closed"):  # was pyzmq's ENOTSOCK
            actors.Subscriber(hub, "late").add_sync_listener(actors.Key("u", "*"), lambda _key, n: None)
