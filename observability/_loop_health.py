"""Event-loop health, always on (after qntln/aiodebug): slow callbacks, loop lag, hangs.

Each probe is one object with ``enable()`` / ``disable()`` and ``statistics()``:

- :data:`slow_callbacks` wraps ``asyncio.Handle._run`` and warns when one callback holds the loop
  longer than a threshold (default 50 ms), naming the task, its coroutine and source line, and the
  actor handler that ran in it. Cost: two ``perf_counter`` calls per loop callback (a callback
  drains many messages, so this is not per message).
- :data:`loop_lag` wakes every ``interval`` and records how late it woke into a local histogram
  (percentiles, not only the last value).
- :data:`hang_watchdog` runs a thread that dumps every thread's stack when the loop has not turned
  for ``timeout`` seconds, once per hang.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from ._histogram import Histogram
from ._ratelimit import RateLimitedLog

SlowCallback = Callable[[str, float], None]


def describe_handle(handle: asyncio.Handle) -> str:
    """A readable name for what a loop callback runs: task, coroutine and source line, actor handler."""
    callback = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        code = getattr(coro, "cr_code", None)
        frame = getattr(coro, "cr_frame", None)
        where = ""
        if code is not None:
            line = frame.f_lineno if frame is not None else code.co_firstlineno
            where = f" at {code.co_filename}:{line}"
        text = f"task {owner.get_name()!r} coroutine {getattr(coro, '__qualname__', coro)!s}{where}"
        inline = _inline_label()  # asked at every report: it holds the slowest since the last one
        label = _handler_label(owner) or inline
        return text + (f" (handler {label})" if label else "")
    text = f"callback {getattr(callback, '__qualname__', callback)!s}"
    label = _inline_label()
    return text + (f" (handler {label})" if label else "")


def _inline_label() -> str | None:
    """The slowest handler run inline since the last call (the callback labeller's), and forget it."""
    labeller = _callback_labeller
    return labeller() if labeller is not None else None


_task_labeller: Callable[[asyncio.Task[Any]], str | None] | None = None
_callback_labeller: Callable[[], str | None] | None = None


def set_callback_labeller(labeller: Callable[[], str | None] | None) -> None:
    """Name the slowest handler a plain callback ran since the last report (handlers run inline in a
    hub's reader callback: the actors package registers this)."""
    global _callback_labeller  # noqa: PLW0603  (one hook for the process, set at import by actors)
    _callback_labeller = labeller


def set_task_labeller(labeller: Callable[[asyncio.Task[Any]], str | None] | None) -> None:
    """Name what a task runs in slow-callback reports (the actors package registers its handlers)."""
    global _task_labeller  # noqa: PLW0603  (one hook for the process, set at import by actors)
    _task_labeller = labeller


def _handler_label(task: asyncio.Task[Any]) -> str | None:
    labeller = _task_labeller
    return labeller(task) if labeller is not None else None


@dataclass(frozen=True)
class SlowCallbackStatistics:
    """How many loop callbacks exceeded the threshold, and the worst one."""

    slow: int
    worst_seconds: float
    worst: str


class SlowCallbackMonitor:
    """Warn about loop callbacks that run longer than a threshold."""

    def __init__(self) -> None:
        self._original: Callable[[asyncio.Handle], None] | None = None
        self.threshold = 0.05
        self.slow = 0
        self.worst_seconds = 0.0
        self.worst = ""
        self.hook_errors = 0
        self._on_slow: SlowCallback | None = None
        # one line per 5 s, with the count of the others: a loop that is slow all the time (a
        # saturated host) must not add a log line per callback to its troubles
        self._log = RateLimitedLog(5.0)

    @property
    def enabled(self) -> bool:
        """True between :meth:`enable` and :meth:`disable`."""
        return self._original is not None

    def enable(self, threshold: float = 0.05, on_slow: SlowCallback | None = None) -> None:
        """Start watching every callback of every loop in this process."""
        self.threshold = threshold
        self._on_slow = on_slow
        self._log = RateLimitedLog(5.0)
        _inline_label()  # a handler slow before this watch began is not this watch's to name
        if self._original is not None:
            return
        original = asyncio.Handle._run
        self._original = original
        monitor = self
        clock = time.perf_counter

        def _run(handle: asyncio.Handle) -> None:
            start = clock()
            original(handle)
            took = clock() - start
            if took >= monitor.threshold:
                monitor._report(handle, took)

        asyncio.Handle._run = _run  # type: ignore[method-assign,assignment]

    def disable(self) -> None:
        """Stop watching."""
        if self._original is not None:
            asyncio.Handle._run = self._original  # type: ignore[method-assign,assignment]
            self._original = None

    def _report(self, handle: asyncio.Handle, took: float) -> None:
        self.slow += 1
        try:
            what = describe_handle(handle)
        except Exception as exc:  # describing must never break the loop
            what = f"<undescribable callback: {exc!r}>"
        if took > self.worst_seconds:
            self.worst_seconds, self.worst = took, what
        self._log.warning(
            "slow", "slow callback: {} took {:.3f} s (threshold {:.3f} s)", what, took, self.threshold
        )
        if self._on_slow is not None:
            try:
                self._on_slow(what, took)
            except Exception as exc:  # runs inside the loop's Handle._run: a hook bug must not end the loop
                self.hook_errors += 1
                self._log.log("ERROR", "hook", "slow-callback hook failed: {!r}", exc, exception=exc)

    def statistics(self) -> SlowCallbackStatistics:
        """Counters so far."""
        return SlowCallbackStatistics(self.slow, self.worst_seconds, self.worst)


@dataclass(frozen=True)
class LoopLagStatistics:
    """Loop lag percentiles in seconds over the samples taken since enable()."""

    samples: int
    p50: float
    p99: float
    max: float
    last: float


class LoopLagMonitor:
    """Record how late the loop wakes a periodic probe."""

    def __init__(self) -> None:
        self.histogram = Histogram()
        self.last = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """True while the probe runs."""
        return self._task is not None and not self._task.done()

    def enable(self, interval: float = 0.25) -> None:
        """Start probing on the running loop every ``interval`` seconds."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._probe(interval), name="tickbus.loop_lag"
            )

    def disable(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _probe(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - due)
            self.last = lag
            self.histogram.record(int(lag * 1e9))

    def statistics(self) -> LoopLagStatistics:
        """Percentiles so far."""
        h = self.histogram
        return LoopLagStatistics(
            h.count, h.percentile(50) / 1e9, h.percentile(99) / 1e9, h.max / 1e9, self.last
        )


def dump_stacks() -> str:
    """Every thread's current stack, as text."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append(f"# thread {names.get(ident, '?')} ({ident})")
        parts.extend(line.rstrip() for line in traceback.format_stack(frame))
    return "\n".join(parts)


class HangWatchdog:
    """A thread that dumps all stacks when the loop has not turned for ``timeout`` seconds."""

    def __init__(self) -> None:
        self.hangs = 0
        self.hook_errors = 0
        self.last_dump = ""
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_hang: Callable[[str], None] | None = None

    @property
    def enabled(self) -> bool:
        """True between :meth:`enable` and :meth:`disable`."""
        return self._thread is not None

    def enable(self, timeout: float = 3.0, on_hang: Callable[[str], None] | None = None) -> None:
        """Watch the running loop; on a hang, log (and pass to ``on_hang``) a dump of every stack."""
        self.disable()
        self._on_hang = on_hang
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._heartbeat(timeout / 4), name="tickbus.hang_beat"
        )
        self._thread = threading.Thread(
            target=self._watch, args=(timeout,), name="tickbus-hang-watchdog", daemon=True
        )
        self._thread.start()

    def disable(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    async def _heartbeat(self, every: float) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(every)

    def _watch(self, timeout: float) -> None:
        dumped_for = -1.0
        while not self._stop.wait(timeout / 10):
            beat = self._beat
            if time.monotonic() - beat > timeout and beat != dumped_for:
                dumped_for = beat
                self.hangs += 1
                self.last_dump = dump_stacks()
                logger.error(
                    "event loop has not turned for {:.1f} s; stacks:\n{}",
                    time.monotonic() - beat,
                    self.last_dump,
                )
                if self._on_hang is not None:
                    try:
                        self._on_hang(self.last_dump)
                    except Exception:  # the watchdog thread must outlive a bug in its hook
                        self.hook_errors += 1
                        logger.exception("hang watchdog hook failed")  # at most once per hang


slow_callbacks = SlowCallbackMonitor()
loop_lag = LoopLagMonitor()
hang_watchdog = HangWatchdog()
