"""systemd's service notifications (``sd_notify(3)``) over ``$NOTIFY_SOCKET``, with a plain socket.

Problem: a ``Type=notify`` unit tells systemd it is ready (``READY=1``), what it is doing
(``STATUS=...``), that it is alive (``WATCHDOG=1``, at least every ``WatchdogSec``) and that it is
stopping (``STOPPING=1``). "Alive" must mean the work gets done: a thread that feeds the watchdog
while the event loop is stuck in a blocking call hides exactly the failure the watchdog is for.

Approach: :class:`SystemdNotifier` reads the environment systemd sets (``NOTIFY_SOCKET``: a path or
an abstract ``@name``; ``WATCHDOG_USEC`` and ``WATCHDOG_PID``) and sends datagrams on an
``AF_UNIX``/``SOCK_DGRAM`` socket; without ``NOTIFY_SOCKET`` every call is a no-op, so the same code
runs under systemd, in a terminal and in tests. :meth:`SystemdNotifier.feed_from_loop` feeds the
watchdog from a callback the event loop itself runs every third of the watchdog period, so a blocked
loop stops feeding and systemd kills and restarts the process; :meth:`feed_from_thread` is for a
process whose work happens in threads (the broker: it feeds when a ``check`` proving the work is
done succeeds). Parsing is plain functions (:func:`parse_notify_address`,
:func:`watchdog_interval`), tested without a socket.

Limits: no file-descriptor passing (``FDSTORE``) and no ``EXTEND_TIMEOUT_USEC``; a failed send is
logged once and the notifier goes quiet (systemd then reports the missing notification itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping

from loguru import logger

from ._errors import ConfigError
from ._ratelimit import RateLimitedLog

_log = RateLimitedLog(interval=60.0)

__all__ = [
    "SystemdNotifier",
    "WatchdogFeeder",
    "notify_service",
    "parse_notify_address",
    "watchdog_interval",
]

_FEEDS_PER_PERIOD = 3  # sd_watchdog_enabled(3) advises at least twice per period; a third is slack


def parse_notify_address(value: str) -> str | bytes:
    """The ``AF_UNIX`` address in ``$NOTIFY_SOCKET``: a path, or bytes for an abstract ``@name``."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ConfigError(
        f"environment: NOTIFY_SOCKET = {value!r} is neither an absolute path nor an abstract '@name'; "
        "it is set by systemd for Type=notify units, unset it elsewhere"
    )


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between feeds systemd asks of process ``pid`` (``None``: no watchdog for it).

    ``WATCHDOG_USEC`` is the period in microseconds; ``WATCHDOG_PID``, when set, names the one process
    it is meant for (a child that inherited the environment must not feed its parent's watchdog).
    """
    usec = environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    target = environ.get("WATCHDOG_PID")
    if target:
        if not target.isdigit():
            raise ConfigError(f"environment: WATCHDOG_PID = {target!r} is not a process id")
        if int(target) != pid:
            return None
    if not usec.isdigit() or int(usec) == 0:
        raise ConfigError(
            f"environment: WATCHDOG_USEC = {usec!r} is not a positive number of microseconds; "
            "it comes from the unit's WatchdogSec="
        )
    return int(usec) / 1e6 / _FEEDS_PER_PERIOD


class WatchdogFeeder:
    """A running watchdog feed (from a loop callback or a thread); :meth:`cancel` stops it."""

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel = cancel

    def cancel(self) -> None:
        """Stop feeding; systemd kills the process after ``WatchdogSec`` unless it exits first."""
        self._cancel()


class SystemdNotifier:
    """Sends ``sd_notify`` messages to the service manager; a no-op without ``$NOTIFY_SOCKET``.

    >>> notifier = SystemdNotifier()
    >>> feeder = notifier.feed_from_loop(asyncio.get_running_loop())
    >>> notifier.ready("connected to tcp://10.0.0.1:5550")
    >>> notifier.stopping()
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = parse_notify_address(raw) if raw else None
        self.watchdog_interval = watchdog_interval(env, os.getpid())
        """Seconds between watchdog feeds, or ``None`` when systemd watches no watchdog for us."""
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()  # a loop callback and a feeding thread may send concurrently
        self.sent = 0
        """Messages sent (plain count, for tests and statistics)."""
        self.skipped = 0
        """Messages not sent because systemd's queue was full (PID 1 busy): never waited for."""

    @property
    def enabled(self) -> bool:
        """Whether systemd listens (``$NOTIFY_SOCKET`` set and no send has failed)."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``VAR=value`` lines in one datagram; ``True`` if sent, ``False`` when disabled."""
        address = self._address
        if address is None:
            return False
        payload = "\n".join(assignments).encode()
        with self._lock:
            try:
                if self._socket is None:  # non-blocking: a full queue at PID 1 must not stop the loop
                    self._socket = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                    )
                self._socket.sendto(payload, address)
            except BlockingIOError:  # systemd is not reading now: skip this one, the next may go
                self.skipped += 1
                _log.log(
                    "WARNING",
                    "notify-full",
                    "systemd's notification socket {!r} is full: {} notification(s) skipped so far",
                    address,
                    self.skipped,
                )
                return False
            except OSError as exc:
                logger.warning(
                    "systemd notification to {!r} failed ({}); no more notifications will be sent",
                    address,
                    exc,
                )
                self._address = None
                return False
            self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: startup is complete (connected, subscribed, bound)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line shown by ``systemctl status``."""
        return self.notify(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown (the drain) has begun."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the process is alive and working."""
        return self.notify("WATCHDOG=1")

    def feed_from_loop(self, loop: asyncio.AbstractEventLoop) -> WatchdogFeeder:
        """Feed the watchdog from a callback ``loop`` runs periodically (a blocked loop stops feeding)."""
        interval = self.watchdog_interval or 0.0
        handle: asyncio.TimerHandle | None = None
        cancelled = False

        def feed() -> None:
            nonlocal handle
            if cancelled:
                return
            self.watchdog()  # False when skipped (PID 1's queue full): the next feed tries again
            if self.enabled:
                handle = loop.call_later(interval, feed)

        def cancel() -> None:
            nonlocal cancelled
            cancelled = True
            if handle is not None:
                handle.cancel()

        if interval > 0 and self.enabled:
            loop.call_soon_threadsafe(feed)
        return WatchdogFeeder(cancel)

    def feed_from_thread(
        self, check: Callable[[], bool], *, name: str = "systemd-watchdog"
    ) -> WatchdogFeeder:
        """Feed the watchdog from a daemon thread, each time ``check()`` returns ``True``.

        ``check`` must prove the process works (e.g. the broker's proxy answered a statistics request)
        and may block up to the feed interval; an exception from it counts as ``False`` and is logged.
        """
        interval = self.watchdog_interval
        done = threading.Event()
        if interval is None or not self.enabled:
            return WatchdogFeeder(done.set)

        def main() -> None:
            while not done.is_set():
                ok = False
                try:
                    ok = check()
                except Exception:
                    logger.exception("watchdog check failed; not feeding systemd's watchdog")
                if ok and not done.is_set():
                    self.watchdog()
                    if not self.enabled:
                        return
                done.wait(interval)

        threading.Thread(target=main, name=name, daemon=True).start()
        return WatchdogFeeder(done.set)

    def close(self) -> None:
        """Close the socket (a later notification opens a new one)."""
        with self._lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):
                    self._socket.close()
                self._socket = None


def notify_service(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, status: str = "stopping"
) -> tuple[SystemdNotifier, WatchdogFeeder]:
    """The usual wiring of an asyncio service: a notifier, its watchdog fed from ``loop``, and
    SIGTERM/SIGINT handlers that send ``STOPPING=1`` then set ``stop``. Call ``ready()`` yourself.
    """
    notifier = SystemdNotifier()
    feeder = notifier.feed_from_loop(loop)

    def on_signal() -> None:
        notifier.stopping(status)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    return notifier, feeder
