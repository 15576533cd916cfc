"""Logging setup: the only place in tickbus that configures loguru sinks.

- On a terminal, coloured human lines; otherwise JSON lines, one flat object per record: ``time``,
  ``level``, ``message``, ``service``, ``actor``, ``host``, ``pid``, ``logger``, ``function``,
  ``line``, any other bound fields, ``exception`` and, when the line is logged while a span is
  current (in the handler of a sampled message: see ``observability.tracing``), ``trace_id`` and
  ``span_id``, the ids ``tickbus trace show`` takes. ``exception`` is an object: ``type``,
  ``message``, ``stack`` (innermost first, the user's frames before tickbus's and the libraries':
  ``file``, ``line``, ``function``, ``user``), ``frames`` and ``cause`` (see
  :mod:`observability._exception_info`). A terminal shows the same in a few lines, never the
  full traceback with asyncio's frames and variables.
- A process that cannot start (a configuration error, an actor that cannot be loaded or started)
  says why in one line: :func:`log_failure`, with ``error`` and ``exit_status`` in the JSON record.
- The sink never blocks the thread that logs: lines cross a bounded queue (``$TICKBUS_LOG_QUEUE``
  lines, default 4,096) to a writer thread, which makes the JSON and writes; when the stream falls
  that far behind (a stalled journal), further lines are dropped, counted in
  :func:`log_statistics` and told in one line every 10 s (see :mod:`observability._log_sink`).
- The standard library's ``logging`` (pyzmq, OpenTelemetry's SDK and exporters) is routed into
  loguru by :class:`InterceptHandler`, at the same level.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import json
import logging
import os
import socket
import sys
import threading
import types
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from ._errors import ConfigError
from ._exception_info import exception_fields, exception_text
from ._log_sink import DEFAULT_MAX_LINES, LogStatistics, QueuedSink
from ._tracing import tracing

if TYPE_CHECKING:
    from loguru import Message, Record

_STANDARD = ("process", "actor", "host", "pid", "trace_id", "span_id", "logger")
_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
_state: dict[str, Any] = {"process": "tickbus", "configured": False, "sink": None}
_EXIT_FLUSH_S = 2.0  # at exit, the longest wait for a stalled stream to take the queued lines


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


def _patch(record: Record) -> None:
    """The patcher, on the thread that logs: the current span's ids, if tracing is on and a span is
    current (cheap otherwise); an exception as plain data while its traceback is still there (a
    queued record is rendered later, on the writer thread, its frames gone by then)."""
    ids = tracing.current_ids()
    extra = record["extra"]
    if ids is not None:
        extra["trace_id"], extra["span_id"] = ids
    exception = record["exception"]
    if exception is not None and exception.value is not None and "_exception" not in extra:
        fields = exception_fields(exception.value, exception.traceback)
        extra["_exception"], extra["_exception_text"] = fields, exception_text(fields)


def _human(record: Record) -> str:
    extra = record["extra"]
    who = "{extra[process]}/{extra[actor]}" if "actor" in extra else "{extra[process]}"
    trace = " <magenta>trace={extra[trace_id]}</magenta>" if "trace_id" in extra else ""
    exception = "\n{extra[_exception_text]}" if "_exception_text" in extra else ""
    return (
        "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> <cyan>" + who + "</cyan> "
        "{message}" + trace + exception + "\n"
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
    if "_exception" in extra:
        entry["exception"] = extra["_exception"]
    elif record["exception"] is not None:  # a record that did not pass the patcher
        kind, value = record["exception"].type, record["exception"].value
        if kind is not None:
            entry["exception"] = {"type": kind.__name__, "message": str(value)}
    return json.dumps(entry, default=str, ensure_ascii=False) + "\n"


def _message_only(record: Record) -> str:
    return "{message}\n"


def _json_text(message: Message) -> str:
    return json_line(message.record)


def _colorize(out: TextIO) -> bool:
    """Colour on a terminal (as loguru decides for a stream it writes itself)."""
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _max_lines() -> int:
    raw = os.environ.get("TICKBUS_LOG_QUEUE", "").strip()
    if not raw:
        return DEFAULT_MAX_LINES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"TICKBUS_LOG_QUEUE={raw!r} must be a whole number of lines, at least 1")
    return value


def _tell_dropped(count: int) -> None:
    logger.bind(dropped=count).warning(
        "{} log lines dropped: the log stream took lines slower than they came ({} at most wait; "
        "TICKBUS_LOG_QUEUE)",
        count,
        _state["sink"].max_lines if _state["sink"] is not None else "?",
    )


def configure_logging(
    process: str = "tickbus",
    *,
    level: str | None = None,
    json: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send loguru output (and the standard library's ``logging``) to ``stream`` (default stderr).

    ``level`` defaults to ``$TICKBUS_LOG_LEVEL`` or INFO; ``json`` to ``$TICKBUS_LOG_JSON`` (``1``/``0``),
    else JSON when the stream is not a terminal. :class:`ConfigError` names a variable that holds
    neither (nothing is changed then).
    """
    _state["process"] = process
    out = stream if stream is not None else sys.stderr
    if level is None:
        raw = os.environ.get("TICKBUS_LOG_LEVEL", "").strip() or "INFO"
        where = f"TICKBUS_LOG_LEVEL={raw!r}"
    else:
        raw, where = level, f"log level {level!r}"
    level = raw.strip().upper()
    if level not in _LEVELS:
        raise ConfigError(f"{where} is not a log level; use one of {', '.join(_LEVELS)}")
    max_lines = _max_lines()
    if json is None:
        flag = os.environ.get("TICKBUS_LOG_JSON", "").strip()
        if flag not in ("", "0", "1"):
            raise ConfigError(f"TICKBUS_LOG_JSON={flag!r} must be 1 (JSON lines) or 0 (human lines)")
        json = (flag == "1") if flag else not out.isatty()
    _install(process, level, json, out, max_lines)


def _install(process: str, level: str, json: bool, out: TextIO, max_lines: int = DEFAULT_MAX_LINES) -> None:
    logger.remove()
    old, _state["sink"] = _state["sink"], None
    if old is not None:
        old.close(_EXIT_FLUSH_S)
    logger.configure(
        extra={"process": process, "host": socket.gethostname(), "pid": os.getpid()}, patcher=_patch
    )
    # The exception is in the patcher's fields (JSON) or drawn from them (_human): loguru's own
    # traceback, with every variable of the failing lines repr'd on the thread that logs (a 1M-entry
    # dict: ~1 s on the loop), would be made for nothing: no backtrace, no variables, and a
    # callable format, to which loguru appends no "{exception}".
    if json:
        sink = QueuedSink(out, _json_text, max_lines=max_lines, notice=_tell_dropped)
        logger.add(sink, level=level, format=_message_only, backtrace=False, diagnose=False)
    else:
        sink = QueuedSink(out, str, max_lines=max_lines, notice=_tell_dropped)
        logger.add(sink, level=level, format=_human, colorize=_colorize(out), backtrace=False, diagnose=False)
    _state["sink"] = sink
    if not _state.get("atexit"):
        atexit.register(_flush_at_exit)  # after loguru's own (atexit runs the last registered first)
        _state["atexit"] = True
    logging.basicConfig(handlers=[InterceptHandler()], level=logger.level(level).no, force=True)
    _route_python_reports()
    _state["configured"] = True


def _route_python_reports() -> None:
    """Python's own reports through loguru too: a warning, a thread ended by an exception, an
    exception ignored in ``__del__``. Python writes them to ``sys.stderr`` itself, on the thread
    that raised (the event loop's, for a warning or a ``__del__`` there), which a stalled journal
    blocks, and as raw text among the JSON lines a log pipeline parses."""
    # the "py.warnings" logger, intercepted as the rest of logging; off first, as a second call
    # does nothing while the first one's hook is remembered, even when it was replaced since
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    # a hook someone else installed (an error reporter, a test runner) still gets the report after
    # it is logged; Python's own writes to stderr, which is what this replaces
    if threading.excepthook is not _thread_ended:
        _hooks["thread"] = threading.excepthook
        threading.excepthook = _thread_ended
    if sys.unraisablehook is not _ignored_exception:
        _hooks["unraisable"] = sys.unraisablehook
        sys.unraisablehook = _ignored_exception


_hooks: dict[str, Any] = {"thread": threading.__excepthook__, "unraisable": sys.__unraisablehook__}


def _sink_open() -> bool:
    sink: QueuedSink | None = _state["sink"]
    return sink is not None and not sink.closed


def _thread_ended(args: threading.ExceptHookArgs) -> None:
    previous = _hooks["thread"]
    if not _sink_open():  # at exit, once the log is closed: Python's own report (or the one before)
        previous(args)
        return
    if args.exc_type is not SystemExit:  # as Python's own hook: a thread may end itself that way
        name = args.thread.name if args.thread is not None else "?"
        value = args.exc_value
        exception = (args.exc_type, value, args.exc_traceback) if value is not None else None
        logger.opt(exception=exception).error("thread {} ended by {}", name, args.exc_type.__name__)
    if previous is not threading.__excepthook__:
        previous(args)


def _ignored_exception(unraisable: Any) -> None:
    previous = _hooks["unraisable"]
    if not _sink_open():  # as in _thread_ended
        previous(unraisable)
        return
    value = unraisable.exc_value
    exception = (unraisable.exc_type, value, unraisable.exc_traceback) if value is not None else None
    # a function's name (a __del__), else the object's type: never its repr, which may cost anything
    where = unraisable.object
    name = where.__qualname__ if isinstance(where, _FUNCTIONS) else f"a {type(where).__qualname__} object"
    logger.opt(exception=exception).warning(
        "{}: {}: {}", unraisable.err_msg or "Exception ignored in", name, unraisable.exc_type.__name__
    )
    if previous is not sys.__unraisablehook__:
        previous(unraisable)


_FUNCTIONS = (types.FunctionType, types.MethodType, types.BuiltinFunctionType)


def _flush_at_exit() -> None:
    sink = _state["sink"]
    if sink is not None:
        sink.close(_EXIT_FLUSH_S)


def announce(line: str, stream: TextIO | None = None) -> threading.Thread:
    """Write ``line`` and a newline to ``stream`` (default stdout) in one write, from a thread of its
    own: a ready line for whoever started the process, which must not stop the caller (the event
    loop) when the stream does not take it (under systemd, stdout is the journal's socket).
    Returns the thread; ``join`` it to wait for the write."""
    out = stream if stream is not None else sys.stdout

    def write() -> None:
        with contextlib.suppress(Exception):  # a closed stdout: nobody is waiting for the line
            out.write(line + "\n")
            out.flush()

    thread = threading.Thread(target=write, name="tickbus-announce", daemon=True)
    thread.start()
    return thread


def flush_logs(timeout: float = 5.0) -> bool:
    """Wait until the lines logged so far are written; False if the stream did not take them within
    ``timeout`` seconds (True when :func:`configure_logging` was not called: nothing is queued)."""
    sink = _state["sink"]
    return True if sink is None else sink.flush(timeout)


def log_statistics() -> LogStatistics:
    """Lines written, dropped (the stream fell ``$TICKBUS_LOG_QUEUE`` lines behind) and lost to failed
    writes by this process's log sink, and how many wait now."""
    sink: QueuedSink | None = _state["sink"]
    return sink.statistics() if sink is not None else LogStatistics()


def log_failure(message: str, error: BaseException | None = None, *, exit_status: int = 2) -> None:
    """Log the one line that says why this process stops before it could run, and wait until it is
    written: ERROR ``message``, with ``error`` (its type name), ``exit_status`` and, in JSON,
    ``exception`` (``error`` as :func:`configure_logging` describes it, without a terminal traceback).

    Before :func:`configure_logging` succeeded (a bad ``$TICKBUS_LOG_LEVEL`` itself, say), it first
    sets up the default sink at INFO: JSON unless stderr is a terminal.
    """
    if not _state["configured"]:
        _install(_state["process"], "INFO", not sys.stderr.isatty(), sys.stderr)
    bound = logger.bind(exit_status=exit_status)
    if error is not None:
        bound = bound.bind(error=type(error).__name__, _exception=exception_fields(error))
    bound.opt(depth=1).error("{}", message)
    flush_logs(_EXIT_FLUSH_S)
