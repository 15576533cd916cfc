"""A real ``$NOTIFY_SOCKET`` (an ``AF_UNIX`` datagram socket recording what a service sends), and a
service process started until its ready line."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from actors.testing import wait_for_line


class NotifyListener:
    """Receives ``sd_notify`` datagrams on ``path``; each is parsed into a dict of ``VAR=value``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.received: list[tuple[float, dict[str, str]]] = []

    def next(self, timeout: float) -> dict[str, str] | None:
        """The next message within ``timeout`` seconds (also recorded in :attr:`received`), or None."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.received.append((time.monotonic(), message))
        return message

    def wait_for(self, var: str, value: str = "1", timeout: float = 20.0) -> dict[str, str]:
        """Read messages until one sets ``var=value``; AssertionError naming what came instead."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.next(left)
            if message is not None and message.get(var) == value:
                return message
        raise AssertionError(f"no {var}={value} within {timeout}s; received {self.received[-10:]}")

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def service(
    argv: list[str], env: dict[str, str], ready: str, timeout: float = 30.0
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``argv``, wait for its line starting with ``ready``; yield (process, line); kill it after."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        yield proc, wait_for_line(proc, ready, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
