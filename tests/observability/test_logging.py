"""Logging: JSON lines with service, actor, host, pid and, inside a sampled message's handler, its
trace and span ids; coloured human lines; the standard library routed into loguru."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import os
import socket
import sys
import threading
import warnings
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
    assert observability.flush_logs()
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
    assert observability.flush_logs()
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
    assert observability.flush_logs()
    [entry] = records(stream)
    assert (entry["message"], entry["level"], entry["logger"]) == ("no keys", "WARNING", "zmq.auth")
    assert entry["function"] == "test_standard_library_logging_goes_through_loguru_with_the_logger_name"


def test_json_lines_carry_bound_fields_and_the_traceback(stream):
    observability.configure_logging("svc", json=True, stream=stream, level="INFO")
    try:
        raise ValueError("bad tick")
    except ValueError:
        logger.bind(hub="h1").exception("failed on {}", "AAPL")
    assert observability.flush_logs()
    [entry] = records(stream)
    assert entry["hub"] == "h1" and entry["message"] == "failed on AAPL"
    assert entry["exception"]["type"] == "ValueError" and entry["exception"]["message"] == "bad tick"


def lookup(payload: dict[str, Any]) -> Any:
    return payload["px"]  # the line a failing handler's record must name


class Pricer(Actor):
    """Fails on every tick without 'px', in a helper called by the handler."""

    name = "pricer"

    async def on_start(self) -> None:
        self.failed = asyncio.Event()

    @handler(("tick", "*"))
    def on_tick(self, key: Key, payload: Any) -> None:
        try:
            self.last = lookup(payload)
        finally:
            self.failed.set()


def line_of(function: Any, text: str) -> int:
    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(lines) if text in line)


HERE = os.path.relpath(__file__)
LOOKUP_LINE = line_of(lookup, "payload[")
HANDLER_LINE = line_of(Pricer.on_tick, "lookup(payload)")


async def fail_once() -> None:
    hub = Hub(name="memory")
    pricer, source = Pricer(hub), Actor(hub, name="source")
    await pricer.start()
    try:
        source.publish(("tick", "AAPL"), {"bid": 1})
        await asyncio.wait_for(pricer.failed.wait(), 5)
        await asyncio.sleep(0)  # the consume loop logs the failure after the handler returns
    finally:
        await pricer.stop()
    assert observability.flush_logs()


async def test_a_failing_handler_s_json_record_keeps_type_message_and_the_user_s_frames_first(stream):
    observability.configure_logging("svc", json=True, stream=stream, level="INFO")
    await fail_once()
    entry = next(e for e in records(stream) if e["level"] == "ERROR" and "failed on" in e["message"])
    exception = entry["exception"]
    assert (exception["type"], exception["message"], entry["actor"]) == ("KeyError", "'px'", "pricer")
    helper, handler_frame, tickbus_frame = exception["stack"][:3]
    assert helper == {
        "file": __file__,
        "line": LOOKUP_LINE,
        "function": "lookup",
        "user": True,
    }
    assert handler_frame["function"] == "on_tick" and handler_frame["user"] is True
    assert tickbus_frame["user"] is False and tickbus_frame["file"].endswith("_actor.py")
    assert exception["frames"] >= 3


async def test_a_failing_handler_on_a_terminal_is_a_few_lines_naming_the_user_s_frames(stream):
    observability.configure_logging("svc", json=False, stream=stream, level="INFO")
    await fail_once()
    text = stream.getvalue()
    start = text.index("failed on")
    block = text[start:].splitlines()
    block = block[: next((i for i, line in enumerate(block[1:], 1) if not line.startswith("  ")), len(block))]
    here = HERE
    assert block[1:] == [
        "  KeyError: 'px'",
        f"    at {here}:{LOOKUP_LINE} in lookup",
        f"    at {here}:{HANDLER_LINE} in on_tick",
        "    (1 frame of tickbus, asyncio and libraries not shown)",
    ]
    assert "Traceback" not in text and "asyncio" not in block[0]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TICKBUS_LOG_LEVEL", "LOUD", "TICKBUS_LOG_LEVEL='LOUD' is not a log level; use one of TRACE, DEBUG"),
        ("TICKBUS_LOG_JSON", "yes", "TICKBUS_LOG_JSON='yes' must be 1 (JSON lines) or 0 (human lines)"),
    ],
)
def test_a_bad_logging_variable_is_a_config_error_naming_it(stream, monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(observability.ConfigError) as raised:
        observability.configure_logging("svc", stream=stream)
    assert str(raised.value).startswith(message)


def test_describe_exception_names_the_innermost_user_frame_of_the_cause():
    try:
        try:
            lookup({})
        except KeyError as exc:
            raise observability.ActorError("actor 'pricer' failed to start") from exc
    except observability.ActorError as exc:
        text = observability.describe_exception(exc)
    here = os.path.relpath(__file__)
    assert text == (
        f"observability._errors.ActorError: actor 'pricer' failed to start ({here}:{LOOKUP_LINE} in lookup)"
    )


async def test_human_lines_show_the_service_actor_and_trace_id(stream):
    observability.configure_logging("svc", json=False, stream=stream, level="INFO")
    spans = await talk("always_on")
    trace_id = f"{spans[0].context.trace_id:032x}"
    line = next(line for line in stream.getvalue().splitlines() if "heard hello" in line)
    assert "svc/talker" in line and f"trace={trace_id}" in line and "INFO" in line


class _Book:
    """A handler's state whose repr would be costly (a big order book): counts the calls."""

    reprs = 0

    def __repr__(self) -> str:
        type(self).reprs += 1
        return "_Book(...)"

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)


@pytest.mark.parametrize("json_lines", [True, False])
def test_logging_an_exception_never_reprs_the_variables_of_the_failing_line(stream, json_lines):
    # loguru's diagnose=True repr'd every variable named on the failing line, on the thread that
    # logs: ~1 s for a 1M-entry dict in a handler, on the event loop, for a line it then threw away
    observability.configure_logging("svc", json=json_lines, stream=stream, level="INFO")
    book = _Book()
    try:
        book["px"]
    except KeyError:
        logger.exception("failed on {}", "AAPL")
    assert observability.flush_logs()
    assert _Book.reprs == 0
    assert "KeyError" in stream.getvalue()


def _fail_in_thread() -> None:
    raise ConnectionError("the feed went away")


class _Leaky:
    def __del__(self) -> None:
        raise RuntimeError("close failed")


@pytest.mark.filterwarnings(  # pytest's own hooks get the reports too, after they are logged
    "ignore::pytest.PytestUnraisableExceptionWarning", "ignore::pytest.PytestUnhandledThreadExceptionWarning"
)
def test_python_s_own_reports_are_json_lines_never_raw_text_on_stderr(stream, capfd):
    # a warning, a thread ended by an exception, an exception ignored in __del__: Python wrote each to
    # sys.stderr itself (on the event loop's thread, for a warning or a __del__ there: a stalled
    # journal blocked it), as raw text among the JSON lines
    saved = threading.excepthook, sys.unraisablehook
    try:
        observability.configure_logging("svc", json=True, stream=stream, level="INFO")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("tick size table is stale", UserWarning, stacklevel=1)
        thread = threading.Thread(target=_fail_in_thread, name="feed-reader")
        thread.start()
        thread.join(10)
        _Leaky()  # dropped at once: its __del__ raises
        entries = records(stream)
    finally:
        threading.excepthook, sys.unraisablehook = saved
        logging.captureWarnings(False)
    assert capfd.readouterr().err == ""
    by_level = {(entry["level"], entry["message"].split(":")[0]) for entry in entries}
    warned = [entry for entry in entries if "tick size table is stale" in entry["message"]]
    assert len(warned) == 1 and warned[0]["level"] == "WARNING" and warned[0]["logger"] == "py.warnings"
    [ended] = [entry for entry in entries if entry["message"] == "thread feed-reader ended by ConnectionError"]
    assert ended["level"] == "ERROR" and ended["exception"]["message"] == "the feed went away"
    [ignored] = [entry for entry in entries if "_Leaky" in entry["message"]]
    assert ignored["level"] == "WARNING", by_level
    assert ignored["exception"]["type"] == "RuntimeError" and ignored["exception"]["message"] == "close failed"


def test_a_rate_limited_line_names_the_function_that_logged_it():
    # log() named its caller's caller: a hub's "discarded what waited" line said asyncio.events:_run
    records: list[dict[str, Any]] = []
    sink = logger.add(lambda message: records.append(message.record), level="INFO")
    try:
        log = observability.RateLimitedLog(interval=60.0)

        def skims() -> None:
            log.log("WARNING", "skim", "discarded {}", 3)

        def overflows() -> None:
            log.warning("overflow", "dropped {}", 4)

        skims()
        overflows()
        skims()  # within the interval: summarised later, not written
    finally:
        logger.remove(sink)
    assert [(r["function"], r["message"]) for r in records] == [
        ("skims", "discarded 3"),
        ("overflows", "dropped 4"),
    ]
