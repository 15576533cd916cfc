"""Messages that all claim to be sampled, through a real broker (issue 11).

A raw pyzmq publisher sends 20,000 messages whose headers carry a valid, sampled trace context. The
receiving actor (this process, tracing into the SDK's real in-memory exporter) honours at most
``max_forced_spans_per_second`` of them (here 50), counts the others, and handles every message.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import actors
import observability
from actors import Actor, Key, handler
from actors.testing import BrokerProcess, eventually
from broker import encode_header, encode_key, encode_message
from tests.system.adversarial.rogue import raw_publisher
from tests.system.chaos.chaos_actors import rss_kib

FLOOD = 20_000
RATE = 50
SAMPLED = ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""]


@pytest.fixture
def in_memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    for name in (
        "OTEL_TRACES_SAMPLER",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "TICKBUS_MAX_FORCED_SPANS",
    ):
        monkeypatch.delenv(name, raising=False)
    exporter = InMemorySpanExporter()
    observability.enable_tracing("victim", exporter=exporter, max_forced_spans_per_second=RATE)
    yield exporter
    observability.disable_tracing()


class Victim(Actor):
    name = "victim"

    async def on_start(self) -> None:
        self.seen: dict[str, int] = {"rogue": 0, "legit": 0}

    @handler(("feed", "*"))
    def on_feed(self, key: Key, payload: Any) -> None:
        self.seen[key[1]] += 1


async def test_sampled_contexts_from_a_peer_are_honoured_only_up_to_the_rate(in_memory):
    with BrokerProcess.start() as broker, raw_publisher(broker.frontend) as rogue:
        hub = await actors.connect(broker.frontend, broker.backend, name="victim", hwm=0)
        legit = await actors.connect(broker.frontend, broker.backend, name="legit")
        victim = Victim(hub)
        await victim.start()
        key = encode_key(Key("feed", "rogue"))
        payload = msgpack.packb({"x": 1})
        try:
            await legit.wait_for_subscribers(Key("feed", "legit"))
            rss_before = rss_kib(os.getpid())
            seq = 0
            async with asyncio.timeout(10):
                while victim.seen["rogue"] == 0:  # until the rogue's PUB heard the subscription
                    seq += 1
                    await rogue.send(
                        encode_message(
                            key, encode_header("rogue@h:1:t", seq, 1, time.time_ns(), SAMPLED), payload
                        )
                    )
                    await asyncio.sleep(0.01)  # resend until it arrives: a PUB drops what nobody wants yet
            started, first = time.monotonic(), victim.seen["rogue"]
            for n in range(FLOOD):
                seq += 1
                await rogue.send(
                    encode_message(
                        key, encode_header("rogue@h:1:t", seq, 1, time.time_ns(), SAMPLED), payload
                    )
                )
                if n % 100 == 0:
                    legit.publish(Key("feed", "legit"), n)
                if n % 2000 == 1999:  # batches the actor's 10,000-message mailbox holds: no overflow
                    await eventually(lambda n=n: victim.seen["rogue"] >= first + n + 1, 20, "batch handled")
            await eventually(lambda: victim.seen["legit"] == FLOOD // 100, 20, "legit messages handled")
            elapsed = time.monotonic() - started
            assert observability.tracing.flush(10)
            consumers = [s for s in in_memory.get_finished_spans() if s.kind is SpanKind.CONSUMER]
            stats = observability.tracing.statistics()
            rss_after = rss_kib(os.getpid())
            print(
                f"\nforced sampling: {seq} sampled messages in {elapsed:.2f} s; consumer spans {len(consumers)}, "
                f"forced_ignored {stats.forced_ignored}; test-process RSS {rss_before} -> {rss_after} KiB "
                f"(+{rss_after - rss_before})"
            )
            assert len(consumers) <= RATE + RATE * (elapsed + 1)
            assert stats.forced_ignored == victim.seen["rogue"] - len(consumers)  # each one decided
            assert victim.seen["legit"] == FLOOD // 100  # nothing legitimate lost
            # unbounded (rate inf), the same flood made 19,507 spans and grew this process by 80 MB
            assert rss_after - rss_before < 40 * 1024
        finally:
            await victim.stop(2)
            await legit.close()
            await hub.close()
