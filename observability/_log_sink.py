"""A sink that never blocks the thread that writes: a bounded queue and a writer thread.

The process's log lines go through one (:mod:`observability._logging`), and so do the lines of a
trace file (:class:`observability._span_json.SpanLineExporter`): neither a stalled disk nor a
stalled journal may stop the event loop.

Problem: loguru's ``enqueue=True`` hands records to its writer thread through a
``multiprocessing.SimpleQueue``, a pipe. When the stream stops taking lines (journald stalled on a
slow disk, a terminal paused with Ctrl-S, a log pipe nobody reads), the writer thread blocks in
``write``, the pipe fills after ~64 KiB of records and the next ``logger.warning`` on the event loop
blocks with it: every actor of the process stops, and under a ``WatchdogSec`` unit systemd kills it.
The pipe has no bound of its own either way: it blocks instead of dropping.

Approach: :class:`QueuedSink` appends the message to a deque of at most ``max_lines`` (past it the
line is dropped and counted in :attr:`QueuedSink.dropped`) and wakes its writer thread, which renders
(JSON lines are made there, off the loop), writes and flushes whole batches. Once lines were dropped
it logs how many, at most every :data:`NOTICE_INTERVAL` seconds. A write that raises is counted in
:attr:`QueuedSink.failures` and the thread goes on: it ends only when the sink is closed.
:meth:`QueuedSink.flush` waits (bounded) until what was queued is written: at exit, and before a
process that cannot start returns its status.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

DEFAULT_MAX_LINES = 4_096
"""Lines waiting for the writer thread at most (``$TICKBUS_LOG_QUEUE``); more are dropped, counted."""
NOTICE_INTERVAL = 10.0  # seconds between two "log lines dropped" lines
_BATCH = 256  # lines rendered and written per write + flush
GATHER_S = 0.02
"""Seconds the writer lets lines gather after it was woken, before it writes them: the lines of a
burst (a trace file's export slices, a drain's log lines) go in one write, and the thread that logs
loses the GIL to the writer once per burst rather than once per line (a publisher at ~200k msgs/s
with 1 % traced: 1.7 % of its loop's CPU samples in waking the writer, 0.5-0.8 % now). A burst after
a quiet spell waits that long for the disk; 4,096 lines (the queue's default) cannot be logged in
20 ms (loguru takes ~17 us a line), and lines that keep coming are written as they come."""


class _Wake:
    """The writer's wake-up: ``set()`` never waits for the writer thread.

    ``threading.Event.set()`` takes the lock of the event's condition, and the waiting thread holds
    that lock while it enters and leaves ``wait()``, running Python. A writer starved of the GIL or
    of a CPU there (2 cores, a busy loop beside it) could hold the logging thread in ``set()``:
    under Austin, ``set()`` took ~1 ms a call on the event loop of a sink actor with 1 % traced,
    0.36 % of the loop; with this, 0.13 % (what is left: the woken writer preempting the loop).
    ``SimpleQueue.put`` only releases a lock. A token per ``set()``; ``clear()`` takes them all; at
    most a few wait, since a line sets it only when the writer went idle."""

    def __init__(self) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set(self) -> None:
        self._tokens.put(None)

    def wait(self, timeout: float | None) -> bool:
        """True when set (now or within ``timeout`` seconds; ``None``: however long it takes)."""
        try:
            self._tokens.get(timeout=timeout)
        except queue.Empty:
            return False
        return True

    def is_set(self) -> bool:
        return not self._tokens.empty()

    def clear(self) -> None:
        while True:
            try:
                self._tokens.get_nowait()
            except queue.Empty:
                return


@dataclass(frozen=True)
class LogStatistics:
    """What the process's log sink did (see :func:`observability.log_statistics`)."""

    written: int = 0
    """Lines written to the stream."""
    dropped: int = 0
    """Lines dropped because ``max_lines`` were already waiting (the stream was slower than the logging)."""
    failures: int = 0
    """Lines lost to a write (or a rendering) that raised: a closed or broken stream."""
    queued: int = 0
    """Lines waiting for the writer thread now."""


class QueuedSink:
    """Call it with loguru's message: queued for the writer thread, or dropped and counted when full.

    ``render`` makes the text of one message on the writer thread (``str`` for a formatted line);
    ``notice(count)`` is called on the writer thread after lines were dropped (it logs, so the line
    comes back through this sink in the configured format). ``name`` names the thread.
    """

    def __init__(
        self,
        stream: IO[str],
        render: Callable[[Any], str],
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        notice: Callable[[int], None] | None = None,
        name: str = "tickbus-log-writer",
    ) -> None:
        if max_lines < 1:
            raise ValueError(f"max_lines={max_lines}: a log queue holds at least one line")
        self._stream, self._render, self._notice = stream, render, notice
        self.max_lines = max_lines
        self._lines: collections.deque[str] = collections.deque()  # loguru's Message is a str
        self._wake = _Wake()
        self._idle = False  # the writer waits for a wake-up: only then does a line set _wake
        self._flushing = 0  # flush() calls waiting: the writer writes at once
        self._flush_lock = threading.Lock()  # for that count only (flush is never on a hot path)
        self._busy = False  # the writer holds lines it took off the queue
        self._closed = False
        self._abandoned = False
        self.written = self.dropped = self.failures = 0
        self._noticed = 0  # dropped lines already told about
        self._noticed_at = -NOTICE_INTERVAL
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __call__(self, message: str) -> None:
        # On the thread that logs, under loguru's handler lock: a length check, an append, and a
        # wake-up only when the writer waits for one (woken, it drains until the queue is empty).
        lines = self._lines
        if (len(lines) >= self.max_lines and threading.current_thread() is not self._thread) or self._closed:
            self.dropped += 1  # the writer's own "dropped" line always goes in: one per NOTICE_INTERVAL
            return
        lines.append(message)
        if self._idle:
            self._idle = False
            self._wake.set()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: lines given now are dropped."""
        return self._closed

    @property
    def full(self) -> bool:
        """True while ``max_lines`` wait: a line given now would be dropped."""
        return len(self._lines) >= self.max_lines

    def statistics(self) -> LogStatistics:
        """The counters, and how many lines wait now."""
        return LogStatistics(self.written, self.dropped, self.failures, len(self._lines))

    def flush(self, timeout: float) -> bool:
        """Wait until every queued line is written; False if that took longer than ``timeout`` s."""
        if threading.current_thread() is self._thread:
            return not self._lines
        with self._flush_lock:
            self._flushing += 1  # the writer does not wait for more lines to gather
        try:
            self._idle = False
            self._wake.set()
            deadline = time.monotonic() + timeout
            while self._lines or self._busy:  # rare (exit, a failed start): a short poll is enough
                if time.monotonic() >= deadline or not self._thread.is_alive():
                    return False
                time.sleep(0.002)
            return True
        finally:
            with self._flush_lock:
                self._flushing -= 1

    def close(self, timeout: float) -> bool:
        """Write what is queued (waiting at most ``timeout`` s), then stop the thread; later lines are
        dropped. False if the stream did not take the queued lines in time."""
        done = self.flush(timeout)
        self._closed = True
        if not done:  # the stream is going away: what still waits is dropped, not written after it
            self._abandoned = True
        self._wake.set()
        return done

    def _run(self) -> None:
        while not (self._closed and not self._lines):
            self._idle = True  # then the queue is looked at: a line appended meanwhile is not missed
            if not self._lines and not self._closed:
                self._wake.wait(self._until_notice())
                self._idle = False
                self._wake.clear()
                if not (self._closed or self._flushing):  # the rest of the burst joins the same
                    self._wake.wait(GATHER_S)  # write; no line wakes the writer meanwhile, a flush does
            self._idle = False
            self._wake.clear()
            try:
                self._drain()
                self._tell()
            except Exception:  # the writer outlives anything a line or a stream does
                self.failures += 1

    def _until_notice(self) -> float | None:
        """Seconds until the next "dropped" line may be logged, None when there is nothing to tell."""
        if self.dropped == self._noticed or self._notice is None:
            return None
        return max(0.0, self._noticed_at + NOTICE_INTERVAL - time.monotonic())

    def _drain(self) -> None:
        lines, render = self._lines, self._render
        while lines:
            if self._abandoned:
                self.dropped += len(lines)
                lines.clear()
                return
            self._busy = True  # before the first line leaves the queue: flush() waits for the write
            try:
                batch: list[str] = []
                while lines and len(batch) < _BATCH:
                    message = lines.popleft()
                    try:
                        batch.append(render(message))
                    except Exception:  # one bad record costs one line
                        self.failures += 1
                if batch:
                    self._write("".join(batch), len(batch))
            finally:
                self._busy = False

    def _write(self, text: str, count: int) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except Exception:  # a closed or broken stream: counted, the thread goes on
            self.failures += count
        else:
            self.written += count

    def _tell(self) -> None:
        dropped = self.dropped
        if dropped == self._noticed or self._notice is None or self._closed:
            return
        now = time.monotonic()
        if now - self._noticed_at < NOTICE_INTERVAL:
            return  # told recently: _run's wait times out when the next line may be logged
        self._noticed_at = now
        count, self._noticed = dropped - self._noticed, dropped
        self._notice(count)


class QueuedStream:
    """The ``write`` / ``flush`` / ``closed`` face of a :class:`QueuedSink`, for an exporter that writes
    one whole line per export to a stream (OpenTelemetry's JSON file exporters): its thread hands the
    line over and goes on; a line the full queue drops calls ``on_drop``."""

    def __init__(self, sink: QueuedSink, on_drop: Callable[[], None] | None = None) -> None:
        self._sink, self._on_drop = sink, on_drop

    @property
    def closed(self) -> bool:
        return self._sink.closed

    def write(self, text: str) -> int:
        if self._sink.full and self._on_drop is not None:
            self._on_drop()
        self._sink(text)  # queued, or dropped and counted
        return len(text)

    def flush(self) -> None:
        """Nothing to do here: the writer thread flushes what it writes."""
