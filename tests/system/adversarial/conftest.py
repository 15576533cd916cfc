"""The adversarial tier: hostile or broken peers against real brokers and hubs (issue 11).

``victim``: a hub in its own process (``victim.py``), so what an attack costs is that process's RSS.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from actors.testing import BrokerProcess


class Victim:
    """A running ``victim.py``: ``await victim.ask("stats")`` returns its JSON answer."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    async def ask(self, line: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline), timeout
        )
        assert reply, f"the victim hub died answering {line!r} (exit {self.proc.poll()})"
        return json.loads(reply)

    async def stats(self) -> dict[str, Any]:
        return await self.ask("stats")


@pytest.fixture
def broker_process() -> AsyncIterator[BrokerProcess]:
    with BrokerProcess.start() as broker:
        yield broker


@pytest.fixture
async def victim_factory(broker_process: BrokerProcess) -> AsyncIterator[Any]:
    started: list[Victim] = []

    async def start(*extra: str) -> Victim:
        proc = subprocess.Popen(  # noqa: ASYNC220 -- read in a thread by Victim.ask
            [
                sys.executable,
                "-m",
                "tests.system.adversarial.victim",
                broker_process.frontend,
                broker_process.backend,
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        victim = Victim(proc)
        started.append(victim)
        assert proc.stdout is not None
        line = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline), 30
        )
        assert json.loads(line) == {"ready": True}
        return victim

    yield start
    for victim in started:
        if victim.proc.poll() is None:
            try:
                await victim.ask("quit", timeout=5)
            except Exception:  # it may print nothing on quit: only its exit matters
                pass
            try:
                victim.proc.wait(5)
            except subprocess.TimeoutExpired:
                victim.proc.kill()
