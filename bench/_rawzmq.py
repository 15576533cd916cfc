"""raw-zmq: the floor. pyzmq PUB -> libzmq proxy process (XSUB/XPUB) -> pyzmq SUB, tickbus's frame.

The publisher sends tickbus's one frame ``key 0xff header payload`` with ``send`` (a PUB socket
never blocks: at the high-water mark libzmq drops, which shows up as loss). High-water marks are
100,000 on every socket, as tickbus's defaults, so both are compared with the same buffering. The
subscriber is asyncio: ``loop.add_reader(sock.FD)`` and ``recv(NOBLOCK)`` until EAGAIN (the descriptor is
edge-triggered, so a callback must read until EAGAIN or reschedule itself, as tickbus's hub does).
"""

from __future__ import annotations

import asyncio
import sys

import zmq

from ._procs import ProcessGroup, free_port, wait_line
from ._systems import Config, OnMessage
from ._wire import KEY_PREFIX, decode_frame, frame

HWM = 100_000  # tickbus's default high-water mark, so both buffer the same
_DRAIN_BUDGET = 2_000  # messages per reader callback before yielding to the loop (same as tickbus)


class _Pub:
    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], sock: zmq.Socket[bytes]) -> None:
        self._ctx, self._sock = ctx, sock

    async def burst(self, first_seq: int, count: int) -> None:
        send = self._sock.send
        for seq in range(first_seq, first_seq + count):
            send(frame(seq))
        await asyncio.sleep(0)

    async def send_one(self, seq: int) -> None:
        self._sock.send(frame(seq))

    def stats(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        self._sock.close(linger=1000)
        self._ctx.term()


class _Sub:
    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], sock: zmq.Socket[bytes], on_message: OnMessage):
        self._ctx, self._sock, self._on_message = ctx, sock, on_message
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.FD, self._drain)

    def _drain(self) -> None:
        sock, on_message = self._sock, self._on_message
        budget = _DRAIN_BUDGET
        while True:
            try:
                data = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            seq, sent_ns = decode_frame(data)
            on_message(seq, sent_ns)
            budget -= 1
            if not budget:  # still readable: come back after other callbacks had their turn
                self._loop.call_soon(self._drain)
                return

    def stats(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        self._loop.remove_reader(self._sock.FD)
        self._sock.close(linger=0)
        self._ctx.term()


class _Driver:
    name = "raw-zmq"

    def unavailable(self) -> str | None:
        return None  # pyzmq is a tickbus dependency

    def start_server(self, procs: ProcessGroup) -> Config:
        frontend = f"tcp://127.0.0.1:{free_port()}"
        backend = f"tcp://127.0.0.1:{free_port()}"
        proxy = procs.server([sys.executable, "-m", "bench._zproxy", frontend, backend])
        wait_line(proxy, b"ready", 15.0)
        return {"frontend": frontend, "backend": backend}

    async def publisher(self, config: Config) -> _Pub:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.connect(config["frontend"])
        return _Pub(ctx, sock)

    async def subscriber(self, config: Config, on_message: OnMessage) -> _Sub:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.SUBSCRIBE, KEY_PREFIX)
        sock.connect(config["backend"])
        return _Sub(ctx, sock, on_message)


DRIVER = _Driver()
