"""Helpers for the broker tests (imported by the test modules; fixtures live in conftest.py).

Waits are on events (a line, a frame) with hard deadlines; :func:`eventually` is only for counters
that have no event to wait on.
"""

from __future__ import annotations

import selectors
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq

READY = "tickbus broker ready "


@dataclass
class BrokerProc:
    """A ``python -m tickbus broker`` subprocess and the endpoints from its ready line."""

    proc: subprocess.Popen[str]
    stderr_path: Path
    frontend: list[str]
    backend: list[str]

    def stderr(self) -> str:
        """What the broker wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the process still runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code, waiting at most ``timeout`` seconds."""
        return self.proc.wait(timeout)


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line of ``proc`` ('' at EOF); ``TimeoutError`` after ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"no line from {proc.args!r} within {timeout}s")
    return proc.stdout.readline()


def parse_ready(line: str) -> tuple[list[str], list[str]]:
    """The frontend and backend endpoint lists of a ready line."""
    assert line.startswith(READY), line
    fields = dict(part.split("=", 1) for part in line[len(READY) :].split())
    assert set(fields) == {"frontend", "backend"}, line
    return fields["frontend"].split(","), fields["backend"].split(",")


def recv_until(sock: zmq.Socket[bytes], done: Callable[[list[bytes]], bool], timeout: float) -> list[bytes]:
    """Receive multipart messages until ``done(frames)``; return those frames. ``TimeoutError`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(max(1, int(left * 1000))):
            raise TimeoutError(f"no matching message within {timeout}s")
        frames = sock.recv_multipart()
        if done(frames):
            return frames


def wait_for_subscription(xpub: zmq.Socket[bytes], prefixes: set[bytes], timeout: float = 5.0) -> None:
    """Wait until the XPUB ``xpub`` saw a subscription to each of ``prefixes`` (the broker forwards them)."""
    missing = set(prefixes)
    deadline = time.monotonic() + timeout
    while missing:
        left = deadline - time.monotonic()
        if left <= 0 or not xpub.poll(max(1, int(left * 1000))):
            raise TimeoutError(f"subscriptions {sorted(missing)!r} not seen within {timeout}s")
        frame = xpub.recv()
        if frame[:1] == b"\x01":
            missing.discard(frame[1:])


def eventually(predicate: Callable[[], bool], timeout: float = 3.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` holds, re-checking every 10 ms (for counters with no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not hold within {timeout}s")
        time.sleep(0.01)  # polling a counter is the point here: there is no event for it
