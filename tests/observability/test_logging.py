"""Logging: JSON lines with service, actor, host, pid and, inside a sampled message's handler, its
trace and span ids; coloured human lines; the standard library routed into loguru."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import observability
from actors import Actor, Hub, Key, handler


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A stream that loguru logs into; loguru and logging are put back as pytest expects them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    observability.disable_tracing()
    logger.remove()
    logger.configure(extra={}, patcher=lambda record: None)
    logger.add(sys.stderr)
    root.handlers[:], root.level = handlers, level


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class Talker(Actor):
    """Logs once per message, bound (``self.log``) and through the global logger."""

    name = "talker"

    async def on_start(self) -> None:
        self.done = asyncio.Event()

    @handler(("say", "*"))
    def on_say(self, key: Key, payload: Any) -> None:
        self.log.info("heard {}", payload)
        logger.info("also heard {}", payload)
        self.done.set()


async def talk(sampler: str) -> list[Any]:
    exporter = InMemorySpanExporter()
    observability.enable_tracing("unit", sampler=sampler, exporter=exporter)
    hub = Hub(name="memory")
    talker, source = Talker(hub), Actor(hub, name="source")
    await talker.start()
    try:
        source.publish(("say", "x"), "hello")
        await asyncio.wait_for(talker.done.wait(), 5)
    finally:
        await talker.stop()
    await logger.complete()
    observability.tracing.flush(5)
    return list(exporter.get_finished_spans())


async def test_log_lines_in_the_handler_of_a_sampled_message_carry_its_trace_and_span_ids(stream):
    observability.configure_logging("svc", json=True, stream=stream, level="INFO")
    spans = await talk("always_on")
    consumer = next(s for s in spans if s.kind is SpanKind.CONSUMER)
    bound, plain = records(stream)[-2:]
    for entry in (bound, plain):
        assert entry["trace_id"] == f"{consumer.context.trace_id:032x}"
        assert entry["span_id"] == f"{consumer.context.span_id:016x}"
        assert entry["service"] == "svc" and entry["host"] == socket.gethostname()
        assert entry["pid"] == os.getpid() and entry["level"] == "INFO"
    assert bound["message"] == "heard hello" and bound["actor"] == "talker"
    assert plain["message"] == "also heard hello" and plain["function"] == "on_say"


async def test_log_lines_for_an_unsampled_message_carry_no_trace_id(stream):
    observability.configure_logging("svc", json=True, stream=stream, level="INFO")
    assert await talk("always_off") == []
    assert [e["message"] for e in records(stream)[-2:]] == ["heard hello", "also heard hello"]
    assert all("trace_id" not in e for e in records(stream))


def test_standard_library_logging_goes_through_loguru_with_the_logger_name(stream):
    observability.configure_logging("svc", json=True, stream=stream, level="INFO")
    logging.getLogger("zmq.auth").warning("no %s", "keys")
    logging.getLogger("opentelemetry.sdk").debug("below the level")
    logger.complete()
    [entry] = records(stream)
    assert (entry["message"], entry["level"], entry["logger"]) == ("no keys", "WARNING", "zmq.auth")
    assert entry["function"] == "test_standard_library_logging_goes_through_loguru_with_the_logger_name"


def test_json_lines_carry_bound_fields_and_the_traceback(stream):
    observability.configure_logging("svc", json=True, stream=stream, level="INFO")
    try:
        raise ValueError("bad tick")
    except ValueError:
        logger.bind(hub="h1").exception("failed on {}", "AAPL")
    logger.complete()
    [entry] = records(stream)
    assert entry["hub"] == "h1" and entry["message"] == "failed on AAPL"
    assert entry["exception"].endswith("ValueError: bad tick")


async def test_human_lines_show_the_service_actor_and_trace_id(stream):
    observability.configure_logging("svc", json=False, stream=stream, level="INFO")
    spans = await talk("always_on")
    trace_id = f"{spans[0].context.trace_id:032x}"
    line = next(line for line in stream.getvalue().splitlines() if "heard hello" in line)
    assert "svc/talker" in line and f"trace={trace_id}" in line and "INFO" in line
