"""Subscriptions longer than ``max_subscription`` never reach libzmq's trie (issue 11, part).

libzmq stores a subscription in a trie that recurses per byte: one 128 KiB prefix overflowed the
broker's stack (SIGSEGV). A SUB socket of this process would crash this process the same way, so the
hostile peer here speaks ZMTP 3.0 itself over a plain TCP socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

import pytest

import actors
import actors.testing
from actors.testing import BrokerProcess


def _zmtp_subscriber(endpoint: str) -> socket.socket:
    """A raw ZMTP 3.0 SUB peer (NULL mechanism) connected to ``tcp://host:port``, handshake done."""
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
    sock.sendall(greeting)
    received = b""
    while len(received) < 64:
        chunk = sock.recv(64 - len(received))
        if not chunk:
            raise ConnectionError("the broker closed during the greeting")
        received += chunk
    ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 3) + b"SUB"
    sock.sendall(b"\x04" + bytes([len(ready)]) + ready)
    return sock


def _subscribe(sock: socket.socket, prefix: bytes) -> None:
    body = b"\x01" + prefix
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # the broker may cut us off mid-frame
        sock.sendall(b"\x02" + struct.pack(">Q", len(body)) + body)  # one long final frame


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


@pytest.mark.parametrize("size", [128 * 1024, 1024 * 1024])
async def test_a_huge_subscription_is_refused_and_the_broker_keeps_serving(size):
    with BrokerProcess.start() as broker:
        feed = await actors.connect(broker.frontend, broker.backend, name="feed")
        sink = await actors.connect(broker.frontend, broker.backend, name="sink")
        got: list[int] = []
        done = asyncio.Event()

        def on_px(key, payload):
            got.append(payload)
            if len(got) == 100:
                done.set()

        hostile = _zmtp_subscriber(broker.backend)
        try:
            _subscribe(hostile, b"a" * size)
            assert await asyncio.to_thread(_closed_by_peer, hostile, 5.0), "the broker kept the peer"
            assert broker.proc.poll() is None, broker.log()[-2000:]
            actors.Subscriber(sink, "app").add_sync_listener(actors.Key("px", "*"), on_px)
            await sink.sync()
            for n in range(100):
                feed.publish(actors.Key("px", "a"), n)
            await asyncio.wait_for(done.wait(), 10)
            assert got == list(range(100))
            assert broker.proc.poll() is None
        finally:
            hostile.close()
            await sink.close()
            await feed.close()


async def test_a_subscription_at_the_limit_is_kept():
    with BrokerProcess.start(extra_args=["--max-subscription", "4096"]) as broker:
        peer = _zmtp_subscriber(broker.backend)
        try:
            _subscribe(peer, b"k" * 4096)
            assert not await asyncio.to_thread(_closed_by_peer, peer, 1.0)
            assert broker.proc.poll() is None
        finally:
            peer.close()


async def test_a_hub_refuses_to_subscribe_a_pattern_longer_than_brokers_accept():
    with BrokerProcess.start() as broker:
        hub = await actors.connect(broker.frontend, broker.backend, name="app")
        try:
            with pytest.raises(actors.InvalidKeyError, match="4096 bytes"):
                hub.add_subscriber(actors.Key("x" * 5000), lambda key, payload, header: None)
        finally:
            await hub.close()


async def test_a_broker_on_ipv6_loopback_serves_hubs():
    port = actors.testing.free_tcp_port()
    with BrokerProcess.start(
        [f"tcp://[::1]:{port}"], [f"tcp://[::1]:{actors.testing.free_tcp_port()}"]
    ) as broker:
        hub = await actors.connect(broker.frontend, broker.backend, name="v6")
        got = asyncio.Event()
        try:
            actors.Subscriber(hub, "app").add_sync_listener(actors.Key("px", "*"), lambda k, p: got.set())
            await hub.sync()
            hub.publish(actors.Key("px", "a"), 1)
            await asyncio.wait_for(got.wait(), 10)
        finally:
            await hub.close()
