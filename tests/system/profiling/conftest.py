"""Fixtures of the profiling tests: a busy Python child process to attach Austin to."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.testing import wait_for_line

BUSY_CHILD = Path(__file__).with_name("busy_child.py")


def start_child(*args: str) -> subprocess.Popen[str]:
    """``busy_child.py`` (``args`` may be ``idle``), once it printed ``ready``."""
    proc = subprocess.Popen([sys.executable, str(BUSY_CHILD), *args], stdout=subprocess.PIPE, text=True)
    try:
        wait_for_line(proc, "ready", 10)
    except BaseException:
        stop_child(proc)
        raise
    return proc


def stop_child(proc: subprocess.Popen[str]) -> None:
    """Kill and reap a child of :func:`start_child`."""
    proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def busy_child() -> Iterator[subprocess.Popen[str]]:
    """A Python process spinning in ``burn_cpu_for_profiler_tests`` until the test ends."""
    proc = start_child()
    try:
        yield proc
    finally:
        stop_child(proc)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not Python."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
