"""The demo's child processes: started one by one until each prints its ready line, logging to
files, stopped with SIGTERM (SIGKILL after a timeout) and, whatever happens, never left behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from actors.testing import free_tcp_port

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 20.0
EXIT_TIMEOUT = 15.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class DemoError(Exception):
    """Something went wrong that the summary cannot report: a process did not start or died."""


_SUN_PATH_MAX = 107  # bytes of a Unix socket's path (sun_path, less its NUL)


def broker_endpoints(workdir: Path, transport: str) -> tuple[str, str]:
    """The broker's frontend and backend: Unix sockets in ``workdir`` for ``ipc`` (every process
    on one host, as a trading server runs them), free loopback ports for ``tcp`` or when the
    socket paths would be too long for the kernel."""
    if transport == "ipc":
        front, back = workdir / "frontend.sock", workdir / "backend.sock"
        if len(os.fsencode(front)) <= _SUN_PATH_MAX and len(os.fsencode(back)) <= _SUN_PATH_MAX:
            return f"ipc://{front}", f"ipc://{back}"
    return f"tcp://127.0.0.1:{free_tcp_port()}", f"tcp://127.0.0.1:{free_tcp_port()}"


def child_environment() -> dict[str, str]:
    """Our environment, with ``examples`` importable and no ``TICKBUS_*`` overrides of the files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKBUS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["TICKBUS_LOG_JSON"] = "0"  # readable log files
    return env


def tickbus_command() -> list[str]:
    """The ``tickbus`` console script of this interpreter (or its module, if it is not installed)."""
    script = Path(sys.executable).with_name("tickbus")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tickbus"]


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, without colour codes."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(_ANSI.sub("", line) for line in text.splitlines()[-lines:])


# -- child processes ----------------------------------------------------------------------------
@dataclass
class Child:
    """One process of the demo: its name, process and log file."""

    name: str
    proc: asyncio.subprocess.Process
    log_path: Path
    drain: asyncio.Task[None] | None = None

    @property
    def code(self) -> int | None:
        """The exit code, or ``None`` while it runs."""
        return self.proc.returncode

    async def stop(self, timeout: float = EXIT_TIMEOUT) -> int:
        """SIGTERM and wait for the exit (SIGKILL after ``timeout`` seconds); return the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            print(f"demo: {self.name} did not exit within {timeout}s of SIGTERM; killing it", file=sys.stderr)
            return await self.kill()

    async def kill(self) -> int:
        """SIGKILL if still running; wait for the exit."""
        if self.proc.returncode is None:
            self.proc.kill()
        code = await self.proc.wait()
        if self.drain is not None:
            await asyncio.gather(self.drain, return_exceptions=True)
        return code


def _open_log(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


class Processes:
    """The demo's child processes by name, each logging to ``<workdir>/<name>.log``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = child_environment()
        self.children: dict[str, Child] = {}

    def __getitem__(self, name: str) -> Child:
        return self.children[name]

    async def start(self, name: str, args: list[str], ready: str) -> Child:
        """Start a process with stderr to its log; return once it prints a line starting ``ready``."""
        log_path = self.workdir / f"{name}.log"
        log_fd = _open_log(log_path)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.PIPE, stderr=log_fd, env=self.env
            )
        finally:
            os.close(log_fd)
        child = self.children[name] = Child(name, proc, log_path)  # from now on kill_all() sees it
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                while not (line := await proc.stdout.readline()).decode().startswith(ready):
                    if not line:
                        code = await proc.wait()
                        raise DemoError(f"{name} exited with code {code} before it was ready; see {log_path}")
        except TimeoutError:
            raise DemoError(
                f"{name} printed no {ready!r} line within {READY_TIMEOUT}s; see {log_path}"
            ) from None
        child.drain = asyncio.get_running_loop().create_task(_copy_stdout(proc.stdout, log_path))
        return child

    async def kill_all(self) -> None:
        """SIGKILL whatever still runs and reap everything."""
        for child in self.children.values():
            await child.kill()


async def _copy_stdout(stream: asyncio.StreamReader, log_path: Path) -> None:
    """Keep reading the child's stdout (so it never blocks on a full pipe) into its log."""
    log_fd = _open_log(log_path)
    try:
        while line := await stream.readline():
            os.write(log_fd, line)
    finally:
        os.close(log_fd)
