"""redis: Redis pub/sub (Debian's ``redis-server``, no persistence) with ``redis.asyncio``.

Publisher: in throughput mode each burst is one non-transactional pipeline of ``PUBLISH`` commands
and one round trip (``await pipe.execute()``), so the client never buffers unboundedly; paced sends
are one ``await r.publish(...)`` each. Subscriber: ``PSUBSCRIBE quote.*`` read with
``pubsub.listen()``. Redis drops a subscriber whose output buffer passes its pubsub limit (32 MB
hard / 8 MB for 60 s by default): that ends its stream and is reported as ``disconnected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
from typing import Any

from ._procs import ProcessGroup, free_port, wait_tcp
from ._systems import Config, OnMessage
from ._wire import REDIS_PATTERN, SUBJECT, BodyDecoder, body

_SERVER = "redis-server"


def _client(config: Config) -> Any:
    import redis.asyncio

    return redis.asyncio.Redis(host="127.0.0.1", port=config["port"], socket_connect_timeout=5)


class _Pub:
    def __init__(self, client: Any) -> None:
        self._r = client

    async def burst(self, first_seq: int, count: int) -> None:
        pipe = self._r.pipeline(transaction=False)
        for seq in range(first_seq, first_seq + count):
            pipe.publish(SUBJECT, body(seq))
        await pipe.execute()

    async def send_one(self, seq: int) -> None:
        await self._r.publish(SUBJECT, body(seq))

    def stats(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        await self._r.aclose()


class _Sub:
    def __init__(self, client: Any, pubsub: Any, on_message: OnMessage) -> None:
        self._r, self._pubsub, self._on_message = client, pubsub, on_message
        self.disconnected = 0
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        decode, on_message = BodyDecoder(), self._on_message
        try:
            async for msg in self._pubsub.listen():
                if msg["type"] == "pmessage":
                    seq, sent_ns = decode(msg["data"])
                    on_message(seq, sent_ns)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self.disconnected = 1  # e.g. dropped by the server for passing its output buffer limit

    def stats(self) -> dict[str, int]:
        return {"disconnected": self.disconnected}

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        await self._r.aclose()


class _Driver:
    name = "redis"

    def unavailable(self) -> str | None:
        if shutil.which(_SERVER) is None:
            return f"{_SERVER} not installed (bash bench/ensure_peers.sh as root installs it)"
        if importlib.util.find_spec("redis") is None:
            return "redis-py not installed (pip install -e '.[bench]')"
        return None

    def start_server(self, procs: ProcessGroup) -> Config:
        port = free_port()
        argv = [_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = procs.server(argv)
        wait_tcp(port, server, 15.0, probe=b"PING\r\n")
        return {"port": port}

    async def publisher(self, config: Config) -> _Pub:
        client = _client(config)
        await client.ping()
        return _Pub(client)

    async def subscriber(self, config: Config, on_message: OnMessage) -> _Sub:
        client = _client(config)
        pubsub = client.pubsub()
        await pubsub.psubscribe(REDIS_PATTERN)
        async with asyncio.timeout(10):  # the confirmation: the server has the subscription
            while (msg := await pubsub.get_message(timeout=1.0)) is None or msg["type"] != "psubscribe":
                pass
        return _Sub(client, pubsub, on_message)


DRIVER = _Driver()
