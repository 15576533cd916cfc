"""Test helpers for tickbus users: real broker and actor processes, free ports, in-memory hubs.

The pytest plugin (:mod:`actors.pytest_plugin`, registered automatically when tickbus is installed)
turns these into fixtures: ``tickbus_broker``, ``tickbus_hub`` and ``tickbus_actors``.

>>> with BrokerProcess.start() as broker:          # a real `tickbus broker` on free ports
...     hub = await actors.connect(broker.frontend, broker.backend)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from observability import TickbusError

from ._extras import MockHub
from ._hub import Hub
from ._parent import spawn_linked

__all__ = ["ActorProcess", "BrokerProcess", "Hub", "MockHub", "eventually", "free_tcp_port", "wait_for_line"]


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` holds, checking every 10 ms; ``TimeoutError`` naming ``what``.

    For state that has no event to wait on (counters in another object); prefer an event when there is one.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what} did not hold within {timeout}s")
        await asyncio.sleep(0.01)  # polling is the point: there is no event


_GIVEN: collections.deque[int] = collections.deque(maxlen=256)  # ports free_tcp_port() returned


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    The kernel may hand a port just released out again at once, so two calls in a row (a
    frontend and a backend) could get the same one: ports this process was given recently are
    skipped.
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


def wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """Read ``proc``'s stdout until a line starting with ``prefix``; raise if it exits or times out."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TickbusError(f"process {proc.args!r} printed no {prefix!r} line within {timeout}s")
            if selector.select(left):
                line = proc.stdout.readline()
                if line.startswith(prefix):
                    return line.strip()
                if not line and proc.poll() is not None:
                    raise TickbusError(
                        f"process {proc.args!r} exited with {proc.returncode} before {prefix!r}"
                    )


@dataclass
class _Process:
    proc: subprocess.Popen[str]
    log_path: Path
    parent_link: int = field(default=-1, repr=False, kw_only=True)  # see spawn_linked

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` if the process still runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` seconds (then SIGKILL); return the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._unlink()

    def _unlink(self) -> None:
        if self.parent_link >= 0 and self.proc.poll() is not None:  # only once the child is gone
            os.close(self.parent_link)
            self.parent_link = -1

    def log(self) -> str:
        """What the process wrote to stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class BrokerProcess(_Process):
    """A real ``tickbus broker`` subprocess."""

    frontend: str = ""
    backend: str = ""
    tmpdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @classmethod
    def launch(
        cls,
        frontends: Sequence[str] | None = None,
        backends: Sequence[str] | None = None,
        *,
        transport: str = "tcp",
        extra_args: Sequence[str] = (),
        timeout: float = 20.0,
    ) -> BrokerProcess:
        """Start a broker on the given endpoints, or on fresh ones of ``transport`` (tcp or ipc)."""
        tmp = tempfile.TemporaryDirectory(prefix="tickbus-broker-")
        if frontends is None or backends is None:
            if transport == "ipc":
                frontends, backends = [f"ipc://{tmp.name}/front"], [f"ipc://{tmp.name}/back"]
            else:
                frontends = [f"tcp://127.0.0.1:{free_tcp_port()}"]
                backends = [f"tcp://127.0.0.1:{free_tcp_port()}"]
        args = [sys.executable, "-m", "tickbus", "broker"]
        for url in frontends:
            args += ["--frontend", url]
        for url in backends:
            args += ["--backend", url]
        args += list(extra_args)
        log_path = Path(tmp.name) / "broker.log"
        env = {**os.environ, "TICKBUS_DATA_DIR": tmp.name}  # its metrics file goes with its temp dir
        with open(log_path, "w") as log:
            proc, link = spawn_linked(args, env, log)
        broker = cls(proc, log_path, frontends[0], backends[0], tmp, parent_link=link)
        try:
            wait_for_line(proc, "tickbus broker ready", timeout)
        except BaseException:
            broker.close()
            raise TickbusError(f"broker did not start: {broker.log()[-2000:]}") from None
        return broker

    @classmethod
    @contextlib.contextmanager
    def start(cls, *args: object, **kwargs: object) -> Iterator[BrokerProcess]:
        """Context manager around :meth:`launch` that always stops the broker."""
        broker = cls.launch(*args, **kwargs)  # type: ignore[arg-type]
        try:
            yield broker
        finally:
            broker.close()

    def close(self) -> int:
        """Stop the broker and remove its temporary directory."""
        code = self.stop()
        if self.tmpdir is not None:
            self.tmpdir.cleanup()
        return code


@dataclass
class ActorProcess(_Process):
    """A real ``tickbus run`` subprocess."""

    tmpdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @classmethod
    def launch(
        cls,
        broker: BrokerProcess | Sequence[BrokerProcess],
        *targets: str,
        name: str = "actors",
        config_toml: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 20.0,
    ) -> ActorProcess:
        """Run ``targets`` (``module:Class``) or a TOML config text against ``broker`` (or several
        brokers: a pair); wait until ready.

        The process's data directory (its metrics file: ``metrics/<name>.jsonl``) is its temporary
        directory unless ``env`` sets ``TICKBUS_DATA_DIR``.
        """
        tmp = tempfile.TemporaryDirectory(prefix="tickbus-run-")
        args = [sys.executable, "-m", "tickbus", "run", "--name", name]
        brokers = [broker] if isinstance(broker, BrokerProcess) else list(broker)
        args += ["--frontend", ",".join(b.frontend for b in brokers)]
        args += ["--backend", ",".join(b.backend for b in brokers)]
        if config_toml is not None:
            path = Path(tmp.name) / "group.toml"
            path.write_text(config_toml)
            args += ["--config", str(path)]
        args += list(targets)
        log_path = Path(tmp.name) / "run.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TICKBUS_DATA_DIR": tmp.name, **(env or {})}
        with open(log_path, "w") as log:
            proc, link = spawn_linked(args, full_env, log)
        actor = cls(proc, log_path, tmp, parent_link=link)
        try:
            wait_for_line(proc, "tickbus run ready", timeout)
        except BaseException:
            log_text = actor.log()
            actor.close()
            raise TickbusError(f"actors {targets} did not start: {log_text[-2000:]}") from None
        return actor

    def close(self) -> int:
        """Stop the process and remove its temporary directory."""
        code = self.stop()
        if self.tmpdir is not None:
            self.tmpdir.cleanup()
        return code
