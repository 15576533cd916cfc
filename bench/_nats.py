"""nats: NATS core (Debian's ``nats-server``) with the nats-py asyncio client.

Publisher: ``await nc.publish("quote.AAPL", header + payload)``; in throughput mode every burst of
messages ends with ``await nc.flush()`` (a PING/PONG round trip once the buffered PUBs are written),
so the client never buffers unboundedly and the publisher runs at the rate the server accepts.
Paced sends yield once to the loop after each publish so nats-py's flusher writes it at once.
Subscriber: ``nc.subscribe("quote.>", cb=...)``; messages nats-py drops because its pending queue
is full (slow consumer) are counted from the error callback.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
from typing import Any

from ._procs import ProcessGroup, free_port, wait_tcp
from ._systems import Config, OnMessage
from ._wire import NATS_WILDCARD, SUBJECT, BodyDecoder, body

_SERVER = "nats-server"


class _Counters:
    def __init__(self) -> None:
        self.slow_consumer = 0
        self.errors = 0

    async def on_error(self, exc: Exception) -> None:
        import nats.errors

        if isinstance(exc, nats.errors.SlowConsumerError):
            self.slow_consumer += 1
        else:
            self.errors += 1

    def stats(self) -> dict[str, int]:
        return {"slow_consumer_drops": self.slow_consumer, "client_errors": self.errors}


async def _connect(config: Config, counters: _Counters) -> Any:
    import nats

    return await nats.connect(
        config["url"],
        connect_timeout=5,
        allow_reconnect=False,
        error_cb=counters.on_error,
        name="tickbus-bench",
    )


class _Pub:
    def __init__(self, nc: Any, counters: _Counters) -> None:
        self._nc, self._counters = nc, counters

    async def burst(self, first_seq: int, count: int) -> None:
        publish = self._nc.publish
        for seq in range(first_seq, first_seq + count):
            await publish(SUBJECT, body(seq))
        await self._nc.flush(timeout=10)

    async def send_one(self, seq: int) -> None:
        await self._nc.publish(SUBJECT, body(seq))
        await asyncio.sleep(0)  # nats-py writes from a flusher task: let it run now

    def stats(self) -> dict[str, int]:
        return self._counters.stats()

    async def close(self) -> None:
        await self._nc.flush(timeout=5)
        await self._nc.close()


class _Sub:
    def __init__(self, nc: Any, counters: _Counters) -> None:
        self._nc, self._counters = nc, counters

    def stats(self) -> dict[str, int]:
        return self._counters.stats()

    async def close(self) -> None:
        await self._nc.close()


class _Driver:
    name = "nats"

    def unavailable(self) -> str | None:
        if shutil.which(_SERVER) is None:
            return f"{_SERVER} not installed (bash bench/ensure_peers.sh as root installs it)"
        if importlib.util.find_spec("nats") is None:
            return "nats-py not installed (pip install -e '.[bench]')"
        return None

    def start_server(self, procs: ProcessGroup) -> Config:
        port = free_port()
        server = procs.server([_SERVER, "-a", "127.0.0.1", "-p", str(port)])
        wait_tcp(port, server, 15.0, probe=b"PING\r\n")
        return {"url": f"nats://127.0.0.1:{port}"}

    async def publisher(self, config: Config) -> _Pub:
        counters = _Counters()
        return _Pub(await _connect(config, counters), counters)

    async def subscriber(self, config: Config, on_message: OnMessage) -> _Sub:
        counters = _Counters()
        nc = await _connect(config, counters)
        decode = BodyDecoder()

        async def handle(msg: Any) -> None:
            seq, sent_ns = decode(msg.data)
            on_message(seq, sent_ns)

        await nc.subscribe(NATS_WILDCARD, cb=handle)
        await nc.flush(timeout=10)  # the server has the subscription once the PONG is back
        return _Sub(nc, counters)


DRIVER = _Driver()
