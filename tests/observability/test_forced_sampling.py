"""Received sampled trace contexts are honoured only up to max_forced_spans_per_second (issue 11);
a process starts at most max_origin_spans_per_second traces.

A sender decides that a message is sampled; without a bound any peer could make a receiver export a
span per message. And a ratio alone makes tracing cost grow with the rate: a burst at ten times the
usual rate would pay for ten times the sampled sends exactly when CPU is short. Spans go to the
SDK's real in-memory exporter.
"""

from __future__ import annotations

import asyncio
import math
import re
import urllib.request
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import observability
from actors import Actor, Hub, Key, handler
from actors.testing import eventually, free_tcp_port
from observability import Metrics, TokenBucket

SAMPLED = ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch):
    for name in (
        "OTEL_TRACES_SAMPLER",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "TICKBUS_MAX_FORCED_SPANS",
        "TICKBUS_MAX_ORIGIN_SPANS",
    ):
        monkeypatch.delenv(name, raising=False)
    yield
    observability.disable_tracing()


class Counter(Actor):
    name = "counter"

    async def on_start(self) -> None:
        self.handled = 0

    @handler(("in", "*"))
    def on_in(self, key: Key, payload: Any) -> None:
        self.handled += 1


async def _flood(count: int) -> Counter:
    hub = Hub(name="memory")
    actor = Counter(hub)
    await actor.start()
    try:
        for n in range(count):
            hub.publish(Key("in", "x"), n, SAMPLED)  # as a peer would: every message 'sampled'
        await eventually(lambda: actor.handled == count, 10, "every message handled")
    finally:
        await actor.stop(drain_timeout=2)
    return actor


def test_a_token_bucket_gives_its_burst_then_its_rate():
    bucket = TokenBucket(10.0, 3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.05) is False  # half a token
    assert bucket.take(0.1) is True
    assert TokenBucket(0.0, 0.0).take(100.0) is False


async def test_forced_spans_beyond_the_rate_are_ignored_counted_and_the_handler_still_runs():
    exporter = InMemorySpanExporter()
    observability.enable_tracing("unit", exporter=exporter, max_forced_spans_per_second=5)
    actor = await _flood(1000)
    assert observability.tracing.flush(5)
    consumers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    stats = observability.tracing.statistics()
    assert actor.handled == 1000  # every message handled, traced or not
    assert 5 <= len(consumers) <= 5 + 5 * 10  # the burst, plus the rate over at most 10 s
    assert stats.consumer_spans == len(consumers)
    assert stats.forced_ignored == 1000 - len(consumers)
    assert stats.max_forced_spans_per_second == 5.0


async def test_the_bound_defaults_to_100_a_second_and_reads_the_environment(monkeypatch):
    observability.enable_tracing("unit", exporter=InMemorySpanExporter())
    assert observability.tracing.statistics().max_forced_spans_per_second == 100.0
    monkeypatch.setenv("TICKBUS_MAX_FORCED_SPANS", "0")
    observability.enable_tracing("unit", exporter=InMemorySpanExporter())
    actor = await _flood(50)
    assert actor.handled == 50
    assert observability.tracing.statistics().consumer_spans == 0  # 0: never honour a peer's sampling
    assert observability.tracing.statistics().forced_ignored == 50
    monkeypatch.setenv("TICKBUS_MAX_FORCED_SPANS", "lots")
    with pytest.raises(observability.TracingError, match="TICKBUS_MAX_FORCED_SPANS='lots'"):
        observability.enable_tracing("unit", exporter=InMemorySpanExporter())


class Feed(Actor):
    name = "feed"
    prefix = ("in",)  # to the Counter


async def _publish_origins(count: int) -> Counter:
    hub = Hub(name="memory")
    feed, sink = Feed(hub), Counter(hub)
    await sink.start()
    await feed.start()
    try:
        for n in range(count):
            feed.publish(("x",), n)  # outside any handler: every one an origin, sampled (always_on)
        await eventually(lambda: sink.handled == count, 10, "every message handled")
    finally:
        await feed.stop(drain_timeout=2)
        await sink.stop(drain_timeout=2)
    return sink


async def test_origins_past_the_budget_go_untraced_counted_and_are_all_delivered():
    exporter = InMemorySpanExporter()
    observability.enable_tracing(
        "unit", sampler="always_on", exporter=exporter, max_origin_spans_per_second=5
    )
    sink = await _publish_origins(1000)
    assert observability.tracing.flush(5)
    producers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    consumers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    stats = observability.tracing.statistics()
    assert sink.handled == 1000  # every message delivered, traced or not
    assert 5 <= len(producers) <= 5 + 5 * 10  # the burst, plus the rate over at most 10 s
    assert stats.producer_spans == len(producers)
    assert stats.origins_over_budget == 1000 - len(producers)
    assert len(consumers) == len(producers)  # each trace started is whole: the sink honoured it
    assert stats.max_origin_spans_per_second == 5.0


async def test_the_origin_budget_defaults_to_100_a_second_reads_the_environment_and_may_be_unbounded(
    monkeypatch,
):
    observability.enable_tracing("unit", sampler="always_on", exporter=InMemorySpanExporter())
    assert observability.tracing.statistics().max_origin_spans_per_second == 100.0
    monkeypatch.setenv("TICKBUS_MAX_ORIGIN_SPANS", "0")
    observability.enable_tracing("unit", sampler="always_on", exporter=InMemorySpanExporter())
    await _publish_origins(50)
    stats = observability.tracing.statistics()
    assert (stats.producer_spans, stats.origins_over_budget) == (0, 50)  # 0: start no trace
    monkeypatch.setenv("TICKBUS_MAX_ORIGIN_SPANS", "inf")
    observability.enable_tracing(
        "unit", sampler="always_on", exporter=InMemorySpanExporter(), max_forced_spans_per_second=math.inf
    )
    await _publish_origins(500)
    stats = observability.tracing.statistics()
    assert (stats.producer_spans, stats.origins_over_budget) == (500, 0)
    monkeypatch.setenv("TICKBUS_MAX_ORIGIN_SPANS", "many")
    with pytest.raises(observability.TracingError, match="TICKBUS_MAX_ORIGIN_SPANS='many'"):
        observability.enable_tracing("unit", exporter=InMemorySpanExporter())
    with pytest.raises(observability.TracingError, match="max_origin_spans_per_second=-1"):
        observability.enable_tracing("unit", exporter=InMemorySpanExporter(), max_origin_spans_per_second=-1)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _counter(text: str, name: str, label: str) -> float:
    """The value of Prometheus series ``name`` whose labels include ``label``."""
    for line in text.splitlines():
        if line.startswith(name + "{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} with {label} in:\n{text}")


async def test_spans_made_and_sampled_messages_left_untraced_are_metrics():
    exporter = InMemorySpanExporter()
    observability.enable_tracing(
        "unit", sampler="always_on", exporter=exporter, max_origin_spans_per_second=5
    )
    await _publish_origins(200)
    await _flood(300)  # received 'sampled' contexts: 100 honoured (the default bound), the rest not
    stats = observability.tracing.statistics()
    port = free_tcp_port()
    metrics = Metrics()
    metrics.enable("unit", prometheus_port=port, otlp_file=False)
    try:
        text = await asyncio.to_thread(_scrape, port)
    finally:
        metrics.disable()
    assert stats.origins_over_budget >= 100 and stats.forced_ignored >= 100  # both bounds were at work
    spans, untraced = "tickbus_tracing_spans_total", "tickbus_tracing_untraced_total"
    assert _counter(text, spans, 'span_kind="producer"') == stats.producer_spans
    assert _counter(text, spans, 'span_kind="consumer"') == stats.consumer_spans
    assert _counter(text, untraced, 'tickbus_reason="over_budget"') == stats.origins_over_budget
    assert _counter(text, untraced, 'tickbus_reason="forced_ignored"') == stats.forced_ignored
    assert _counter(text, untraced, 'tickbus_reason="invalid_context"') == 0
    assert re.search(r"^# TYPE tickbus_tracing_untraced_total counter$", text, re.M)
