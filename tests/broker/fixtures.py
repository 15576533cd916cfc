"""Fixtures for the broker tests: real broker processes, short temp dirs for ipc, a zmq context.

Every fixture tears down what it made: processes are SIGTERMed (then SIGKILLed), sockets closed with
linger 0, temp dirs removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from .broker_helpers import BrokerProc, parse_ready, read_line

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path (ipc paths must stay under 107 bytes); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="tb-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def launch(short_tmp: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``launch(*args)`` starts ``python -m tickbus broker *args`` (stderr to a file); all are killed at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        log = short_tmp / f"broker-{len(procs)}.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tickbus", "broker", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        proc.stderr_path = log  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def broker(launch: Callable[..., subprocess.Popen[str]]) -> Callable[..., BrokerProc]:
    """``broker(*args)`` starts a broker and waits (5 s at most) for its ready line."""

    def start(*args: str) -> BrokerProc:
        proc = launch(*args)
        path: Path = proc.stderr_path  # type: ignore[attr-defined]
        try:
            line = read_line(proc, 5.0)
        except TimeoutError:
            raise AssertionError(f"broker not ready within 5 s; stderr: {path.read_text()}") from None
        if not line:
            raise AssertionError(f"broker exited with {proc.wait(1)}; stderr: {path.read_text()}")
        frontend, backend = parse_ready(line)
        return BrokerProc(proc, path, frontend, backend)

    return start


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    """A zmq context whose sockets are all closed with linger 0 at teardown."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    # linger 0 from birth: a socket garbage-collected before teardown must not hold term() up
    context.setsockopt(zmq.LINGER, 0)
    yield context
    context.destroy(linger=0)
