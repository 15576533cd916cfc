"""Logging setup: the only place in tickbus that configures loguru sinks.

- On a terminal, coloured human lines; otherwise JSON lines, one flat object per record: ``time``,
  ``level``, ``message``, ``service``, ``actor``, ``host``, ``pid``, ``logger``, ``function``,
  ``line``, any other bound fields, ``exception`` (the formatted traceback) and, when the line is
  logged while a span is current (in the handler of a sampled message: see
  ``observability.tracing``), ``trace_id`` and ``span_id``, the ids ``tickbus trace show`` takes.
- The sink enqueues: records cross a queue to loguru's writer thread, which formats and writes them,
  so a slow sink never blocks the event loop.
- The standard library's ``logging`` (pyzmq, OpenTelemetry's SDK and exporters) is routed into
  loguru by :class:`InterceptHandler`, at the same level.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from ._tracing import tracing

if TYPE_CHECKING:
    from loguru import Message, Record

_STANDARD = ("process", "actor", "host", "pid", "trace_id", "span_id", "logger")


class InterceptHandler(logging.Handler):
    """A ``logging`` handler that hands every record to loguru, keeping its level, logger name, caller
    and exception (loguru's documented recipe)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Re-log ``record`` through loguru."""
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).bind(logger=record.name).log(
            level, record.getMessage()
        )


def _add_trace_ids(record: Record) -> None:
    """The patcher: the current span's ids, if tracing is on and a span is current (cheap otherwise)."""
    ids = tracing.current_ids()
    if ids is not None:
        record["extra"]["trace_id"], record["extra"]["span_id"] = ids


def _human(record: Record) -> str:
    extra = record["extra"]
    who = "{extra[process]}/{extra[actor]}" if "actor" in extra else "{extra[process]}"
    trace = " <magenta>trace={extra[trace_id]}</magenta>" if "trace_id" in extra else ""
    return (
        "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> <cyan>" + who + "</cyan> "
        "{message}" + trace + "\n{exception}"
    )


def json_line(record: Record) -> str:
    """One record as a JSON object on one line (what the JSON sink writes)."""
    extra = record["extra"]
    entry: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "service": extra.get("process"),
        "actor": extra.get("actor"),
        "host": extra.get("host"),
        "pid": extra.get("pid", record["process"].id),
        "logger": extra.get("logger", record["name"]),
        "function": record["function"],
        "line": record["line"],
    }
    if "trace_id" in extra:
        entry["trace_id"], entry["span_id"] = extra["trace_id"], extra.get("span_id")
    entry.update((k, v) for k, v in extra.items() if k not in _STANDARD and not k.startswith("_"))
    exception = record["exception"]
    if exception is not None:
        import traceback

        entry["exception"] = "".join(
            traceback.format_exception(exception.type, exception.value, exception.traceback)
        ).rstrip()
    return json.dumps(entry, default=str, ensure_ascii=False) + "\n"


class _JsonSink:
    """Writes each message's record as a JSON line (runs on loguru's writer thread when enqueued)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, message: Message) -> None:
        self._stream.write(json_line(message.record))
        self._stream.flush()


def configure_logging(
    process: str = "tickbus",
    *,
    level: str | None = None,
    json: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send loguru output (and the standard library's ``logging``) to ``stream`` (default stderr).

    ``level`` defaults to ``$TICKBUS_LOG_LEVEL`` or INFO; ``json`` to ``$TICKBUS_LOG_JSON`` (``1``/``0``),
    else JSON when the stream is not a terminal.
    """
    out = stream if stream is not None else sys.stderr
    level = (level or os.environ.get("TICKBUS_LOG_LEVEL", "INFO")).upper()
    if json is None:
        flag = os.environ.get("TICKBUS_LOG_JSON")
        json = (flag == "1") if flag in ("0", "1") else not out.isatty()
    logger.remove()
    logger.configure(
        extra={"process": process, "host": socket.gethostname(), "pid": os.getpid()}, patcher=_add_trace_ids
    )
    if json:
        logger.add(_JsonSink(out), level=level, enqueue=True)
    else:
        logger.add(out, level=level, format=_human, colorize=None, enqueue=True)
    logging.basicConfig(handlers=[InterceptHandler()], level=logger.level(level).no, force=True)
