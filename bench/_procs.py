"""Child processes: free loopback ports, servers started with readiness checks, and certain cleanup.

Every server is a ``subprocess.Popen`` whose output goes to a temporary file (so a chatty server
never blocks on a pipe), and every client a ``multiprocessing`` process started with the 'spawn'
method; both are registered in a :class:`ProcessGroup`, whose ``close()`` (run from a ``finally``
or ``with`` block) terminates them, waits briefly and kills what is left. On Linux the children
also ask the kernel for SIGTERM when this process dies, so even a killed harness leaves no servers
behind.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
_PR_SET_PDEATHSIG = 1
_PR_SET_TIMERSLACK = 29
SPAWN = multiprocessing.get_context("spawn")


class ServerError(RuntimeError):
    """A server or client process failed to start or answer in time."""


_GIVEN: collections.deque[int] = collections.deque(maxlen=256)  # ports free_port() returned


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    The kernel may hand a port just released out again at once, so two calls in a row (a
    frontend and a backend) could get the same one: ports this process was given recently are
    skipped. (``actors.testing.free_tcp_port`` does the same; the harness must also run where
    tickbus does not import, to measure the other systems.)
    """
    held: list[socket.socket] = []
    try:
        while True:  # a port given out recently stays bound here, so the kernel picks another
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in _GIVEN:
                _GIVEN.append(port)
                return port
    finally:
        for sock in held:
            sock.close()


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def fine_timer_slack(slack_ns: int = 1_000) -> None:
    """Let short sleeps wake on time (Linux's default 50 us timer slack would dominate a 100 us gap)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_TIMERSLACK, slack_ns, 0, 0, 0)


def wait_tcp(port: int, proc: subprocess.Popen[bytes], timeout: float, probe: bytes = b"") -> None:
    """Wait until ``127.0.0.1:port`` accepts (and, with ``probe``, answers it); raise on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{proc.args!r} exited with {proc.returncode}: {output_tail(proc)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if not probe:
                    return
                sock.sendall(probe)
                if sock.recv(64):
                    return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"{proc.args!r} did not answer on port {port} within {timeout}s")


def wait_line(proc: subprocess.Popen[bytes], prefix: bytes, timeout: float) -> bytes:
    """Wait until the server's output has a line starting with ``prefix``; raise on timeout or exit."""
    log = _LOGS[proc.pid]
    deadline = time.monotonic() + timeout
    while True:
        exited = proc.poll() is not None  # read the log after this, so a last line is not missed
        for line in _output(log).splitlines():
            if line.startswith(prefix):
                return line
        if exited:
            raise ServerError(f"{proc.args!r} exited with {proc.returncode}: {output_tail(proc)}")
        if time.monotonic() > deadline:
            raise ServerError(
                f"{proc.args!r} printed no {prefix!r} line within {timeout}s: {output_tail(proc)}"
            )
        time.sleep(0.02)


def output_tail(proc: subprocess.Popen[bytes], lines: int = 5) -> str:
    """The last lines a server printed (its output goes to a temporary file, so it never blocks)."""
    log = _LOGS.get(proc.pid)
    if log is None:
        return ""
    with contextlib.suppress(Exception):
        return " | ".join(_output(log).decode(errors="replace").strip().splitlines()[-lines:])
    return ""


def _output(log: IO[bytes]) -> bytes:
    """Everything a server wrote to ``log`` so far, read without moving the file's offset.

    The server's stdout and stderr are the same open file as ``log``, so they share one offset:
    a ``seek(0)`` here between two of the server's writes made its next write land at the start
    of the file. ``print("ready")`` is two writes, "ready" then the newline, so the file could read
    "\\neady" and a server that had started was reported as not ready (once in a ``make bench``
    run; 78 starts in 1,500 on a loaded machine). ``os.pread`` reads at an offset of its own.
    """
    chunks: list[bytes] = []
    offset, fd = 0, log.fileno()
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


_LOGS: dict[int, IO[bytes]] = {}


class ProcessGroup:
    """Owns every process of one measurement and ends them all on ``close()``."""

    def __init__(self) -> None:
        self._servers: list[subprocess.Popen[bytes]] = []
        self._clients: list[BaseProcess] = []

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start a server with stdout and stderr in a temporary file (see :func:`wait_line`)."""
        log = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the server; closed in close()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            # The harness starts no threads, so running this between fork and exec is safe here.
            preexec_fn=die_with_parent,  # noqa: PLW1509
        )
        _LOGS[proc.pid] = log
        self._servers.append(proc)
        return proc

    def client(
        self, target: Callable[..., Any], *args: Any
    ) -> tuple[BaseProcess, multiprocessing.connection.Connection]:
        """Start ``target(*args, conn)`` in a spawned process; returns it and the parent's pipe end."""
        parent, child = SPAWN.Pipe()
        proc = SPAWN.Process(target=target, args=(*args, child), daemon=True)
        proc.start()
        child.close()
        self._clients.append(proc)
        return proc, parent

    def close(self) -> None:
        """Let the clients finish (up to 1 s in all), terminate what is left and every server, wait up to
        ~2 s each, kill whatever remains.

        A client that finished its measurement exits by itself within milliseconds; terminated
        instead, it would leave its logging queue's semaphore to multiprocessing's resource tracker
        (a warning at the end of ``make bench``)."""
        grace = time.monotonic() + 1.0
        for client in self._clients:
            client.join(max(0.0, grace - time.monotonic()))
        for client in self._clients:
            if client.is_alive():
                client.terminate()
        for server in self._servers:
            if server.poll() is None:
                server.terminate()
        deadline = time.monotonic() + 2.0
        for client in self._clients:
            client.join(max(0.0, deadline - time.monotonic()))
            if client.is_alive():
                client.kill()
                client.join(1.0)
        for server in self._servers:
            try:
                server.wait(max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                server.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(1.0)
            log = _LOGS.pop(server.pid, None)
            if log is not None:
                log.close()
        self._clients.clear()
        self._servers.clear()
