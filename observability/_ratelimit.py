"""Rate-limited logging for anomalies on the receive path (gaps, drops, malformed frames).

Only anomalies call this, never the per-message fast path; at most one line per ``interval`` per
topic reaches loguru, carrying how many occurrences it stands for.
"""

from __future__ import annotations

import time
from typing import Any

from loguru import logger


class RateLimitedLog:
    """At most one warning per topic per ``interval`` seconds, with a count of what it summarises."""

    def __init__(self, interval: float = 5.0, **bind: Any) -> None:
        self._interval = interval
        self._next: dict[str, float] = {}
        self._pending: dict[str, int] = {}
        self._logger = logger.bind(**bind) if bind else logger

    def warning(self, topic: str, message: str, *args: Any) -> None:
        """Log ``message.format(*args)`` unless ``topic`` was logged within the interval."""
        self._write("WARNING", topic, message, args, None)

    def log(
        self, level: str, topic: str, message: str, *args: Any, exception: BaseException | None = None
    ) -> None:
        """Like :meth:`warning` at any loguru level, optionally with an exception's traceback."""
        self._write(level, topic, message, args, exception)

    def _write(
        self, level: str, topic: str, message: str, args: tuple[Any, ...], exception: BaseException | None
    ) -> None:
        # called by warning() and log() only: depth 2 is their caller, whose place the record names
        now = time.monotonic()
        if now < self._next.get(topic, 0.0):
            self._pending[topic] = self._pending.get(topic, 0) + 1
            return
        self._next[topic] = now + self._interval
        suppressed = self._pending.pop(topic, 0)
        if suppressed:
            message += " ({} similar suppressed in the last {}s)"
            args = (*args, suppressed, self._interval)
        self._logger.opt(depth=2, exception=exception).log(level, message, *args)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up: :meth:`take` says whether one is left.

    Plain Python, no lock and no clock of its own (the caller passes ``now``, monotonic seconds), so
    a receive path can decide per message for a few hundred nanoseconds. ``rate`` may be ``inf``
    (never refuses) or 0 (refuses once the burst is spent).
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one (True), else False; ``now`` in monotonic seconds."""
        elapsed = now - self._stamp
        tokens = self._tokens
        if elapsed > 0:
            self._stamp = now
            tokens = min(self.burst, tokens + elapsed * self.rate)
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False
