"""The log sink never blocks the thread that logs: a stream that stops taking lines (a stalled
journal, a pipe nobody reads) costs dropped lines, counted and told, never a stalled event loop."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from loguru import logger

import observability
from observability import _log_sink
from observability._log_sink import QueuedSink

from ._otlp import sum_by_attribute

MAX_LINES = 100


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logger.remove()
    logger.configure(extra={}, patcher=lambda record: None)
    logger.add(sys.stderr)
    root.handlers[:], root.level = handlers, level


def _drain(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into.extend(chunk)


def test_a_pipe_nobody_reads_drops_counted_lines_and_never_blocks_the_logger(restore_logging, monkeypatch):
    monkeypatch.setenv("TICKBUS_LOG_QUEUE", str(MAX_LINES))
    monkeypatch.setattr(_log_sink, "NOTICE_INTERVAL", 0.2)
    read_fd, write_fd = os.pipe()
    stream = open(write_fd, "w", encoding="utf-8")  # noqa: SIM115 -- closed below
    observability.configure_logging("svc", json=True, stream=stream, level="INFO")
    total = 5_000  # ~1 MB of JSON: far past the pipe's 64 KiB and the queue's 100 lines
    done = threading.Event()
    peak = [0]

    def log_all() -> None:
        for i in range(total):
            logger.info("line {} {}", i, "x" * 100)
            peak[0] = max(peak[0], observability.log_statistics().queued)
        done.set()

    threading.Thread(target=log_all, daemon=True).start()
    # loguru's enqueue=True blocked here for good: its writer stuck in write(), its pipe full
    assert done.wait(60), "logging blocked on a stream that takes no lines"
    stalled = observability.log_statistics()
    assert stalled.dropped > 0 and peak[0] <= MAX_LINES  # (what was written may hold a "dropped"
    # notice of the writer's own already: the exact accounting is below, once everything is read)

    received = bytearray()
    reader = threading.Thread(target=_drain, args=(read_fd, received), daemon=True)
    reader.start()  # the stream takes lines again: what waited is written, and the drop is told
    assert observability.flush_logs(30)
    logger.warning("after the stall")
    told = 0
    deadline = time.monotonic() + 30
    while told < stalled.dropped and time.monotonic() < deadline:  # told in lines 0.2 s apart
        assert observability.flush_logs(30)
        told = sum(entry.get("dropped", 0) for entry in _entries(received))
        time.sleep(0.05)
    after = observability.log_statistics()
    stream.close()
    reader.join(10)
    os.close(read_fd)
    lines = _entries(received)
    messages = [entry["message"] for entry in lines]
    assert "after the stall" in messages
    notices = [entry for entry in lines if "log lines dropped" in entry["message"]]
    assert sum(entry["dropped"] for entry in notices) == after.dropped == stalled.dropped
    assert {entry["level"] for entry in notices} == {"WARNING"}
    kept = [m for m in messages if m.startswith("line ")]
    assert len(kept) == after.written - 1 - len(notices)  # every line counted written is there
    assert len(kept) + after.dropped == total and after.failures == 0
    assert kept == sorted(kept, key=lambda m: int(m.split()[1]))  # in order, the newest dropped


class _Flaky(io.StringIO):
    """Raises on the first write (a stream closed under the writer), then takes lines."""

    def __init__(self) -> None:
        super().__init__()
        self.raised = False

    def write(self, text: str) -> int:
        if not self.raised:
            self.raised = True
            raise BrokenPipeError("gone")
        return super().write(text)


def _entries(received: bytearray) -> list[dict[str, object]]:
    text = bytes(received).decode()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def test_a_write_that_raises_is_counted_and_the_writer_goes_on():
    stream = _Flaky()
    sink = QueuedSink(stream, str, max_lines=10)
    sink("lost\n")
    assert sink.flush(10)
    sink("kept\n")
    assert sink.flush(10)
    assert stream.getvalue() == "kept\n"
    stats = sink.statistics()
    assert (stats.failures, stats.written, stats.dropped) == (1, 1, 0)
    assert sink.close(10)
    sink("after close\n")
    assert sink.statistics().dropped == 1


def test_a_record_that_cannot_be_rendered_costs_that_line_only():
    stream = io.StringIO()

    def render(message: str) -> str:
        if "bad" in message:
            raise ValueError("cannot render")
        return message

    sink = QueuedSink(stream, render, max_lines=10)
    for text in ("one\n", "bad\n", "two\n"):
        sink(text)
    assert sink.flush(10) and sink.close(10)
    assert stream.getvalue() == "one\ntwo\n"
    assert (sink.statistics().failures, sink.statistics().written) == (1, 2)


def test_a_bad_queue_size_is_a_config_error_naming_the_variable(restore_logging, monkeypatch):
    monkeypatch.setenv("TICKBUS_LOG_QUEUE", "lots")
    with pytest.raises(observability.ConfigError, match=r"TICKBUS_LOG_QUEUE='lots' must be a whole number"):
        observability.configure_logging("svc", stream=io.StringIO())


def test_lost_log_lines_are_exported_as_a_metric_by_reason(restore_logging, monkeypatch, tmp_path):
    monkeypatch.setenv("TICKBUS_LOG_QUEUE", "1")
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # nobody will ever read: every write fails (EPIPE; Python ignores SIGPIPE)
    stream = open(write_fd, "w", encoding="utf-8")  # noqa: SIM115 -- closed below
    observability.configure_logging("svc", json=True, stream=stream, level="INFO")
    for i in range(50):
        logger.info("line {}", i)
    observability.flush_logs(10)
    stats = observability.log_statistics()
    assert stats.failures > 0 and stats.dropped > 0
    metrics = observability.Metrics()
    path = tmp_path / "m.jsonl"
    try:
        metrics.enable("unit", otlp_file=path, interval=3600)
        assert metrics.flush()
    finally:
        metrics.disable()
    line = json.loads(path.read_text().splitlines()[0])  # the flush's (disable exports once more)
    by_reason = sum_by_attribute(line, "tickbus.log.lost")
    assert by_reason["queue_full"] >= stats.dropped and by_reason["write_failed"] >= stats.failures
    observability.configure_logging("svc", json=True, stream=io.StringIO(), level="INFO")  # stop writing
    with contextlib.suppress(BrokenPipeError):  # what the stream still buffers cannot go anywhere
        stream.close()


def test_a_ready_line_on_a_stream_that_takes_nothing_never_blocks_its_caller():
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    with contextlib.suppress(BlockingIOError):
        while True:  # the pipe is full: as a stalled journal's socket
            os.write(write_fd, b"x" * 65536)
    os.set_blocking(write_fd, True)
    stream = open(write_fd, "w", encoding="utf-8")  # noqa: SIM115 -- closed below
    writer = observability.announce("tickbus run ready group=g actors=a", stream)  # returns at once
    assert writer.is_alive()  # the write waits on its own thread
    received = bytearray()
    reader = threading.Thread(target=_drain, args=(read_fd, received), daemon=True)
    reader.start()
    writer.join(30)
    assert not writer.is_alive()
    stream.close()
    reader.join(30)  # to the end of the pipe
    os.close(read_fd)
    assert received.endswith(b"tickbus run ready group=g actors=a\n")


class _GatedStream(io.StringIO):
    """A stream whose writes wait for ``gate``: the writer thread stays busy in one write."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.writing = threading.Event()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writing.set()
        self.gate.wait(30)
        self.writes += 1
        return super().write(text)


def test_lines_given_while_the_writer_is_busy_do_not_wake_it_and_go_out_in_one_write() -> None:
    # Each wake-up of the writer thread makes the thread that logs lose the GIL to it: a trace file's
    # export slices or a burst of log lines each cost that, once per line, before
    stream = _GatedStream()
    sink = QueuedSink(stream, str, max_lines=1_000, name="test-gated-writer")
    try:
        sink("first\n")
        assert stream.writing.wait(10), "the writer never took the first line"
        for n in range(200):
            sink(f"line {n}\n")
        assert not sink._wake.is_set(), "lines given while the writer was busy woke it (it drains them anyway)"
        stream.gate.set()
        assert sink.flush(10)
        assert stream.getvalue() == "first\n" + "".join(f"line {n}\n" for n in range(200))
        assert stream.writes == 2  # the first line, then the 200 in one write (under _BATCH of 256)
    finally:
        stream.gate.set()
        sink.close(5)
