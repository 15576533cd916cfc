"""A raw pyzmq publisher for attack tests: sends whatever frames a test makes, through a real broker."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import zmq
import zmq.asyncio


@contextlib.contextmanager
def raw_publisher(frontend: str) -> Iterator[zmq.asyncio.Socket]:
    """A PUB socket connected to the broker's ``frontend`` (no send queue limit, no linger), closed after."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.connect(frontend)
    try:
        yield sock
    finally:
        sock.close()
        ctx.term()
