"""Tracing on the in-process hub: sampling at the origin, spans and their conventions, exporters.

Spans go to the SDK's own in-memory exporter (a real exporter, not a mock) or to the real OTLP JSON
file and HTTP exporters.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import select
import signal
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import observability
from actors import Actor, Hub, Key, handler
from observability._sampling import sampling_policy

from ._otlp import otlp_collector


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    yield
    observability.disable_tracing()


def trace_to_memory(sampler: str = "always_on") -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    observability.enable_tracing("unit", sampler=sampler, exporter=exporter)
    return exporter


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    assert observability.tracing.flush(5)
    return sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)


class Relay(Actor):
    """Handles ``('in', *)``: records the header, publishes ``('out', *)``, fails on payload 'boom'."""

    name = "relay"

    async def on_start(self) -> None:
        self.headers: list[Any] = []
        self.handled = asyncio.Event()

    @handler(("in", "*"))
    def on_in(self, key: Key, payload: Any) -> None:
        self.headers.append(self.header)
        self.handled.set()
        if payload == "boom":
            raise RuntimeError("boom")
        self.publish(("out", key[1]), payload)


class Sink(Actor):
    """Collects what arrives at ``('out', *)`` with its header."""

    name = "sink"

    async def on_start(self) -> None:
        self.headers: list[Any] = []
        self.arrived = asyncio.Event()

    @handler(("out", "*"))
    async def on_out(self, key: Key, payload: Any) -> None:
        self.headers.append(self.header)
        self.arrived.set()


async def run_chain(payload: Any = 1) -> tuple[Relay, Sink]:
    """source (outside any handler) -> relay (handler publishes) -> sink, on one in-process hub."""
    hub = Hub(name="memory")
    relay, sink, source = Relay(hub), Sink(hub), Actor(hub, name="source")
    for actor in (relay, sink, source):
        await actor.start()
    try:
        source.publish(("in", "AAPL"), payload)
        await asyncio.wait_for(relay.handled.wait(), 5)
        if payload != "boom":
            await asyncio.wait_for(sink.arrived.wait(), 5)
    finally:
        for actor in (source, sink, relay):
            await actor.stop(drain_timeout=2)
    return relay, sink


# -- the sampling policy ----------------------------------------------------------------------------
def test_sampling_defaults_to_parentbased_traceidratio_at_one_percent():
    policy = sampling_policy()
    assert (policy.name, policy.ratio, policy.parent_based) == ("parentbased_traceidratio", 0.01, True)


def test_sampling_reads_otel_traces_sampler_and_its_argument(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    policy = sampling_policy()
    assert (policy.name, policy.ratio, policy.parent_based) == ("traceidratio", 0.25, False)


@pytest.mark.parametrize(
    ("name", "ratio"),
    [("always_on", 1.0), ("always_off", 0.0), ("parentbased_always_on", 1.0), ("traceidratio", 1.0)],
)
def test_fixed_samplers_and_a_ratio_sampler_without_argument_have_these_ratios(name, ratio):
    assert sampling_policy(name).ratio == ratio


def test_an_unknown_sampler_is_refused_naming_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "jaeger_remote")
    with pytest.raises(observability.TracingError, match=r"OTEL_TRACES_SAMPLER='jaeger_remote'.*always_on"):
        observability.enable_tracing("unit")
    assert not observability.tracing.enabled


@pytest.mark.parametrize(("arg", "message"), [("lots", "not a number"), ("1.5", "outside 0..1")])
def test_a_bad_sampler_argument_is_refused(monkeypatch, arg, message):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    with pytest.raises(observability.TracingError, match=message):
        sampling_policy()


@pytest.mark.parametrize(
    ("variable", "value"), [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")]
)
def test_the_standard_switches_turn_tracing_off(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    observability.enable_tracing("unit", sampler="always_on")
    assert not observability.tracing.enabled


# -- spans ----------------------------------------------------------------------------------------
async def test_a_sampled_origin_makes_a_producer_root_a_linked_consumer_child_and_a_child_producer():
    exporter = trace_to_memory("always_on")
    relay, sink = await run_chain()
    spans = finished(exporter)
    assert [(s.name, s.kind) for s in spans] == [
        ("publish in", SpanKind.PRODUCER),
        ("process in", SpanKind.CONSUMER),
        ("publish out", SpanKind.PRODUCER),
        ("process out", SpanKind.CONSUMER),
    ]
    origin, process_in, publish_out, process_out = spans
    assert len({s.context.trace_id for s in spans}) == 1
    assert origin.parent is None
    for child, parent in ((process_in, origin), (publish_out, process_in), (process_out, publish_out)):
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
    for consumer, producer in ((process_in, origin), (process_out, publish_out)):
        assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]
        assert consumer.attributes["messaging.message.id"] == producer.attributes["messaging.message.id"]
    assert dict(origin.attributes) == {
        "messaging.system": "tickbus",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "in/AAPL",
        "messaging.message.id": "memory:1",
        "tickbus.actor": "source",
    }
    assert dict(process_out.attributes) == {
        "messaging.system": "tickbus",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "out/AAPL",
        "messaging.message.id": "memory:2",
        "messaging.consumer.group.name": "sink",
        "tickbus.actor": "sink",
        "tickbus.handler": "Sink.on_out",
    }
    resource = origin.resource.attributes
    assert resource["service.name"] == "unit" and "host.name" in resource and "process.pid" in resource
    trace = relay.headers[0].trace
    assert trace[0].startswith(f"00-{origin.context.trace_id:032x}-{origin.context.span_id:016x}-")
    assert int(trace[0][-2:], 16) & 1  # the sampled flag (the SDK also sets W3C level 2's random-id flag)
    assert sink.headers[0].trace[0].split("-")[2] == f"{publish_out.context.span_id:016x}"
    stats = observability.tracing.statistics()
    assert (stats.producer_spans, stats.consumer_spans, stats.invalid_contexts) == (2, 2, 0)


async def test_an_unsampled_origin_makes_no_span_and_its_messages_carry_no_trace_context():
    exporter = trace_to_memory("always_off")
    relay, sink = await run_chain()
    assert finished(exporter) == []
    assert relay.headers == [None] and sink.headers == [None]  # in-process: no header without a trace


async def test_origins_are_sampled_at_the_ratio_one_draw_per_sampled_publish():
    # Actor.publish counts toward a geometric gap instead of tossing a coin per publish: the same
    # Bernoulli(ratio) sampling, checked here on 20,000 origins (seeded: the count is exact, the band
    # is +-5 standard deviations of a binomial count)
    random.seed(12)
    observability.enable_tracing(
        "unit", ratio=0.1, exporter=InMemorySpanExporter(), max_origin_spans_per_second=math.inf
    )
    feed = Actor(Hub(name="memory"), name="feed")
    for n in range(20_000):
        feed.publish(("tick", "AAPL"), n)
    sampled = observability.tracing.statistics().producer_spans
    assert abs(sampled - 2_000) <= 5 * math.sqrt(20_000 * 0.1 * 0.9), sampled
    gaps = [observability.tracing.origin_gap() for _ in range(20_000)]
    assert min(gaps) == 1 and abs(statistics.fmean(gaps) - 10) < 0.5  # a geometric gap's mean: 1 / ratio


async def test_an_actor_made_before_tracing_was_enabled_samples_from_its_next_publish():
    hub = Hub(name="memory")
    feed = Actor(hub, name="feed")  # tracing off: its next sampled origin is never
    feed.publish(("tick", "AAPL"), 1)
    exporter = trace_to_memory("always_on")
    feed.publish(("tick", "AAPL"), 2)  # enabling drew its next one afresh: this one
    assert [s.name for s in finished(exporter)] == ["publish tick"]
    observability.disable_tracing()
    exporter.clear()
    feed.publish(("tick", "AAPL"), 3)
    assert exporter.get_finished_spans() == ()
    assert observability.tracing.origin_gap() == observability.Tracing.NEVER


def test_a_forked_child_starts_traces_of_its_own():
    # new traces' ids are made a batch at a time ahead of use: a child must not reuse its parent's
    from observability import _message_hooks as hooks

    exporter = trace_to_memory("always_on")
    hooks._NEW_TRACES.clear()
    observability.tracing.send(_Source(), ("tick", "AAPL"), 1)
    parents = list(hooks._NEW_TRACES)
    assert len(parents) == hooks._ID_BATCH - 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what is left of the batch, and the trace it starts
        left = len(hooks._NEW_TRACES)
        observability.tracing.send(_Source(), ("tick", "AAPL"), 2)
        os.write(write, json.dumps([left, _Source.hub.traces[-1][0]]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        ready, _, _ = select.select([pipe], [], [], 30.0)
        if not ready:  # a child stuck (a lock held by another thread at the fork): fail, not hang
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert ready, "the forked child did not report within 30 s"
        left, child_traceparent = json.load(pipe)
    assert left == 0
    assert child_traceparent not in parents
    assert len(finished(exporter)) == 1


class _Hub:
    name = "memory"
    traces: ClassVar[list[list[str]]] = []

    def publish(self, key: tuple[str, ...], message: Any, trace: list[str] | None = None) -> int:
        if trace is not None:
            self.traces.append(trace)
        return 1


class _Source:
    name = "source"
    hub = _Hub()


async def test_a_failing_handler_marks_its_consumer_span_as_an_error():
    exporter = trace_to_memory("always_on")
    await run_chain("boom")
    consumer = next(s for s in finished(exporter) if s.kind is SpanKind.CONSUMER)
    assert consumer.status.status_code is StatusCode.ERROR
    assert consumer.status.description == "RuntimeError: boom"
    assert [event.name for event in consumer.events] == ["exception"]


class Annotating(Actor):
    """Uses its consumer span as user code may: attributes, events, links, status, a child span."""

    name = "annotating"

    async def on_start(self) -> None:
        self.done = asyncio.Event()
        self.span: Any = None

    @handler(("in", "*"))
    def on_in(self, key: Key, payload: Any) -> None:
        span = self.span = otel_trace.get_current_span()
        assert span.is_recording()
        span.set_attribute("order.id", "o-1")
        span.set_attributes({"order.qty": 100, "tickbus.actor": "renamed by the handler"})
        span.set_attribute("order.bad", object())  # not an attribute value: not kept, as the SDK does
        for n in range(payload):
            span.add_event("tick seen", {"n": n})
        span.add_link(otel_trace.SpanContext(0xABC, 0xDEF, is_remote=True))
        span.add_link(otel_trace.INVALID_SPAN_CONTEXT)  # not kept
        span.update_name("process in (annotated)")
        span.set_status(StatusCode.OK)
        span.set_status(StatusCode.ERROR, "after OK: ignored, as the SDK does")
        tracer = observability.tracing.tracer
        assert tracer is not None
        with tracer.start_as_current_span("decide"):
            pass
        self.done.set()


async def annotate(events: int) -> tuple[Annotating, InMemorySpanExporter]:
    exporter = trace_to_memory("always_on")
    hub = Hub(name="memory")
    annotating, source = Annotating(hub), Actor(hub, name="source")
    for actor in (annotating, source):
        await actor.start()
    try:
        source.publish(("in", "AAPL"), events)
        await asyncio.wait_for(annotating.done.wait(), 5)
    finally:
        for actor in (source, annotating):
            await actor.stop(drain_timeout=2)
    return annotating, exporter


async def test_a_handler_uses_its_consumer_span_as_an_sdk_span_and_the_record_keeps_it():
    annotating, exporter = await annotate(events=2)
    spans = finished(exporter)
    by_name = {s.name: s for s in spans}
    consumer, child = by_name["process in (annotated)"], by_name["decide"]
    assert consumer.kind is SpanKind.CONSUMER and consumer.status.status_code is StatusCode.OK
    attributes = dict(consumer.attributes)
    assert (attributes["order.id"], attributes["order.qty"]) == ("o-1", 100)
    assert attributes["tickbus.actor"] == "renamed by the handler"  # the handler's value wins
    assert attributes["messaging.system"] == "tickbus" and attributes.get("order.bad") is None
    assert [(e.name, dict(e.attributes)) for e in consumer.events] == [
        ("tick seen", {"n": 0}),
        ("tick seen", {"n": 1}),
    ]
    producer = by_name["publish in"]
    assert [link.context.span_id for link in consumer.links] == [producer.context.span_id, 0xDEF]
    assert child.parent is not None and child.parent.span_id == consumer.context.span_id  # nested
    assert child.context.trace_id == consumer.context.trace_id == producer.context.trace_id
    span = annotating.span
    assert not span.is_recording()
    span.set_attribute("late", 1)  # after the end: ignored
    span.end()  # twice: recorded once
    assert "late" not in dict(consumer.attributes)
    assert len(finished(exporter)) == len(spans)


def written_spans(file: Path) -> list[dict[str, Any]]:
    """Every span of an OTLP JSON lines file."""
    return [
        span
        for line in file.read_text().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


async def test_spans_written_on_the_loop_are_made_at_the_export_as_they_ended(monkeypatch, tmp_path: Path):
    # to a file, spans leave as records and are made when the loop exports them (_span_export):
    # what the handler did is in them, what was done to the span after its end is not
    monkeypatch.setenv("TICKBUS_DATA_DIR", str(tmp_path))
    observability.enable_tracing("unit", sampler="always_on")
    hub = Hub(name="memory")
    annotating, source = Annotating(hub), Actor(hub, name="source")
    for actor in (annotating, source):
        await actor.start()
    try:
        source.publish(("in", "AAPL"), 2)
        await asyncio.wait_for(annotating.done.wait(), 5)
        annotating.span.set_attribute("late", 1)  # ended, not yet exported: still ignored
        annotating.span.add_event("late")
    finally:
        for actor in (source, annotating):
            await actor.stop(drain_timeout=2)
    file = Path(observability.tracing.statistics().file or "")
    observability.disable_tracing()  # exports what is queued
    by_name = {span["name"]: span for span in written_spans(file)}
    assert sorted(by_name) == ["decide", "process in (annotated)", "publish in"]
    consumer, producer = by_name["process in (annotated)"], by_name["publish in"]
    attributes = {a["key"]: a["value"] for a in consumer["attributes"]}
    assert attributes["order.id"] == {"stringValue": "o-1"} and "late" not in attributes
    assert [e["name"] for e in consumer["events"]] == ["tick seen", "tick seen"]
    assert consumer["parentSpanId"] == producer["spanId"] and consumer["status"] == {"code": 1}
    produced = {a["key"]: a["value"]["stringValue"] for a in producer["attributes"]}
    assert produced["messaging.message.id"].endswith(":1") and produced["tickbus.actor"] == "source"


async def test_a_consumer_span_keeps_128_events_and_counts_the_rest_as_dropped():
    _, exporter = await annotate(events=130)
    consumer = next(s for s in finished(exporter) if s.kind is SpanKind.CONSUMER)
    assert (len(consumer.events), consumer.dropped_events) == (128, 2)


async def test_a_malformed_trace_context_is_counted_and_the_handler_runs_untraced():
    exporter = trace_to_memory("always_on")
    hub = Hub(name="memory")
    relay = Relay(hub)
    await relay.start()
    try:
        hub.publish(Key("in", "AAPL"), 1, ["00-not-a-traceparent-01", ""])
        await asyncio.wait_for(relay.handled.wait(), 5)
    finally:
        await relay.stop()
    assert [s.kind for s in finished(exporter)] == []  # the relay's publish followed its untraced message
    assert observability.tracing.statistics().invalid_contexts == 1


async def test_a_timer_publishing_while_an_async_handler_awaits_a_sampled_message_is_an_origin():
    exporter = trace_to_memory("always_on")
    hub = Hub(name="memory")
    release, waiting = asyncio.Event(), asyncio.Event()

    class Slow(Actor):
        @handler(("in", "*"))
        async def on_in(self, key: Key, payload: Any) -> None:
            waiting.set()
            await release.wait()

    slow = Slow(hub, name="slow")
    await slow.start()
    try:
        hub.publish(Key("in", "x"), 1, ["00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", ""])
        await asyncio.wait_for(waiting.wait(), 5)
        slow.publish(("tick",), 2)  # as from a timer: not the consumer task
        release.set()
    finally:
        await slow.stop()
    timer_span = next(s for s in finished(exporter) if s.kind is SpanKind.PRODUCER)
    assert timer_span.parent is None and f"{timer_span.context.trace_id:032x}" != "ab" * 16


# -- exporters ------------------------------------------------------------------------------------
async def test_by_default_spans_go_as_otlp_json_lines_under_the_data_directory(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TICKBUS_DATA_DIR", str(tmp_path))
    observability.enable_tracing("my group", actors=["relay"], sampler="always_on")
    path = Path(observability.tracing.statistics().file or "")
    assert path.parent == tmp_path / "traces" and path.name.startswith("my_group-")
    await run_chain()
    observability.disable_tracing()  # flushes
    spans = list(observability.list_traces(tmp_path))
    assert len(spans) == 1 and spans[0].spans == 4 and spans[0].services == ("my group",)
    assert spans[0].root.resource["tickbus.actors"] == "relay"


async def test_an_otlp_endpoint_in_the_environment_sends_spans_as_otlp_http_json(monkeypatch):
    with otlp_collector() as collector:
        endpoint = collector.url
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        observability.enable_tracing("unit", sampler="always_on")
        assert observability.tracing.statistics().otlp_endpoint == endpoint + "/v1/traces"
        await run_chain()
        observability.disable_tracing()
        assert collector.arrived.wait(10)
    path, _, body = collector.requests[0]
    assert path == "/v1/traces"
    names = {s["name"] for rs in body["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]}
    assert names <= {"publish in", "process in", "publish out", "process out"} and names


async def test_spans_carry_the_application_version_as_service_version_and_tickbus_beside_it():
    exporter = InMemorySpanExporter()
    observability.enable_tracing("unit", sampler="always_on", exporter=exporter, version="1.3.0")
    await run_chain()
    resource = finished(exporter)[0].resource.attributes
    assert resource["service.version"] == "1.3.0"
    assert resource["tickbus.version"] == observability.tickbus_version()
    default = observability.process_resource("unit").attributes
    assert default["service.version"] == observability.tickbus_version()
