"""Tracing across real processes: the wire, a `tickbus run` handler's log line, and the demo pipeline
whose trace ``tickbus trace show`` renders."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import observability
from actors import Actor, Key, RemoteHub, handler
from actors.testing import ActorProcess, BrokerProcess, eventually
from broker import decode_message

REPO = Path(__file__).resolve().parents[3]
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")
OTEL_VARIABLES = (
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
)


@pytest.fixture
def in_memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing of this process into the SDK's in-memory exporter; off again afterwards."""
    for name in (*OTEL_VARIABLES, "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    yield InMemorySpanExporter()
    observability.disable_tracing()


def producer_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    assert observability.tracing.flush(5)
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER]


async def test_unsampled_messages_carry_no_trace_context_on_the_wire_and_sampled_ones_do(
    tickbus_broker: BrokerProcess, tickbus_hub: RemoteHub, in_memory: InMemorySpanExporter
):
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.connect(tickbus_broker.backend)
        sub.setsockopt(zmq.SUBSCRIBE, b"raw\x00")
        await tickbus_hub.wait_for_subscribers(("raw", "x"), timeout=10)
        source = Actor(tickbus_hub, name="source")

        observability.enable_tracing("wire", sampler="always_off", exporter=in_memory)
        source.publish(("raw", "x"), 1)  # an origin: the sampler says no
        key, header, _ = decode_message(await asyncio.wait_for(sub.recv(), 10))  # one frame (format 2)
        assert key == b"raw\x00x\x00"
        assert header.trace is None
        assert producer_spans(in_memory) == []

        sampled = InMemorySpanExporter()  # enabling again shut the first one down
        observability.enable_tracing("wire", sampler="always_on", exporter=sampled)
        source.publish(("raw", "x"), 2)
        _, header, _ = decode_message(await asyncio.wait_for(sub.recv(), 10))
        trace = header.trace
        [span] = producer_spans(sampled)
        assert trace is not None and TRACEPARENT.match(trace[0]) and trace[1] == ""
        assert trace[0][3:52] == f"{span.context.trace_id:032x}-{span.context.span_id:016x}"
        assert span.attributes["messaging.message.id"] == f"{tickbus_hub.publisher_id}:2"
    finally:
        sub.close(linger=0)
        ctx.term()


async def test_a_handler_in_another_process_logs_the_trace_id_of_the_sampled_message_it_handles(
    tickbus_broker: BrokerProcess, tickbus_hub: RemoteHub, in_memory: InMemorySpanExporter
):
    env = {"TICKBUS_LOG_JSON": "1", "OTEL_TRACES_SAMPLER": "always_off"}  # it follows what arrives
    proc = ActorProcess.launch(
        tickbus_broker, "tests.system.integration.tracing_actors:Logger", name="logs", env=env
    )
    try:
        observability.enable_tracing("driver", sampler="always_on", exporter=in_memory)
        acks: list[Any] = []
        arrived = asyncio.Event()

        class Acks(Actor):
            @handler(("trace-ack", "*"))
            def on_ack(self, key: Key, payload: Any) -> None:
                acks.append(self.header)
                arrived.set()

        sink, source = Acks(tickbus_hub, name="acks"), Actor(tickbus_hub, name="source")
        await sink.start()
        await tickbus_hub.sync()
        await tickbus_hub.wait_for_subscribers(("trace-log", "x"), timeout=10)
        source.publish(("trace-log", "x"), 7)
        await asyncio.wait_for(arrived.wait(), 10)
        await sink.stop()
        origin = next(s for s in producer_spans(in_memory) if s.name == "publish trace-log")
        trace_id = f"{origin.context.trace_id:032x}"
        assert acks[0].trace[0][3:35] == trace_id  # the remote handler's publish continued the trace

        def logged() -> list[dict[str, Any]]:
            lines = (line for line in proc.log().splitlines() if line.startswith("{"))
            return [e for e in map(json.loads, lines) if e["message"] == "logging 7 in a handler"]

        await eventually(lambda: bool(logged()), 10, "the handler's log line")
        [entry] = logged()
        assert entry["trace_id"] == trace_id and entry["actor"] == "logger" and entry["service"] == "logs"
        assert entry["pid"] == proc.proc.pid and entry["host"]

        assert proc.stop() == 0  # the runner flushes its spans on the way out
        assert proc.tmpdir is not None
        spans = observability.find_trace(proc.tmpdir.name, trace_id)
        consumer = next(s for s in spans if s.kind == "CONSUMER")
        assert consumer.parent_id == f"{origin.context.span_id:016x}"
        assert consumer.links == ((trace_id, consumer.parent_id),)
    finally:
        proc.close()


@pytest.mark.slow
def test_the_demo_traces_ticks_through_feed_model_and_strategy_and_trace_show_renders_them(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in OTEL_VARIABLES}
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--seconds", "4", "--rate", "1000"]
        + ["--trace-ratio", "0.2", "--data-dir", str(data)],
        cwd=REPO,
        env={**env, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"demo failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    shown = re.search(r"tickbus trace show ([0-9a-f]{32}) --data-dir (\S+)$", result.stdout, re.MULTILINE)
    assert shown is not None, result.stdout
    trace_id = shown[1]
    assert Path(shown[2]) == data.resolve()
    assert sorted(p.name.split("-")[0] for p in (data / "traces").glob("*.jsonl")) == [
        "feed",
        "model",
        "strategy",
        "ui",
    ]

    spans = observability.find_trace(data, trace_id)
    by_id = {s.span_id: s for s in spans}
    assert {"feed", "model", "strategy"} <= {s.service for s in spans}
    assert len({s.resource["process.pid"] for s in spans}) >= 3
    for span in spans:
        attributes = span.attributes
        assert attributes["messaging.system"] == "tickbus"
        assert attributes["messaging.destination.name"].split("/")[0] == span.name.split()[1]
        assert attributes["messaging.message.id"]
        if span.kind == "PRODUCER":
            assert (attributes["messaging.operation.type"], attributes["messaging.operation.name"]) == (
                "send",
                "publish",
            )
        else:
            assert span.kind == "CONSUMER"
            assert (attributes["messaging.operation.type"], attributes["messaging.operation.name"]) == (
                "process",
                "process",
            )
            assert attributes["messaging.consumer.group.name"] == span.service
            producer = by_id[span.parent_id]  # parented under the producer in another process ...
            assert (
                producer.kind == "PRODUCER"
                and producer.resource["process.pid"] != span.resource["process.pid"]
            )
            assert span.links == ((trace_id, producer.span_id),)  # ... and linked to it
            assert attributes["messaging.message.id"] == producer.attributes["messaging.message.id"]
    chain = [(s.service, s.name) for s in spans if s.service != "ui"]
    assert chain == [
        ("feed", "publish tick"),
        ("model", "process tick"),
        ("model", "publish state"),
        ("strategy", "process state"),
        ("strategy", "publish decision"),
    ]

    tickbus = Path(sys.executable).with_name("tickbus")
    shown_out = subprocess.run(
        [str(tickbus), "trace", "show", trace_id, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shown_out.returncode == 0, shown_out.stderr
    out = shown_out.stdout
    assert out.startswith(f"trace {trace_id}:")
    for service in ("feed", "model", "strategy"):
        assert f"{service}: " in out
    assert "└─ model: process tick [CONSUMER]" in out and "link=parent" in out
