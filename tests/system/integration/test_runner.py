"""`tickbus run`: ready line, SIGTERM drain with exit 0, failure policy, clear load errors."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest

import actors
from actors.testing import ActorProcess, BrokerProcess, eventually


@pytest.fixture
def broker():
    with BrokerProcess.start() as running:
        yield running


async def test_sigterm_drains_queued_messages_then_exits_zero(broker):
    proc = ActorProcess.launch(
        broker, "tests.system.integration.sample_actors:Echo", name="echo", env={"ECHO_DELAY": "0.002"}
    )
    hub = await actors.connect(broker.frontend, broker.backend, name="driver")
    pongs: list[int] = []
    try:
        actors.Subscriber(hub, "s").add_sync_listener(actors.Key("pong", "*"), lambda k, p: pongs.append(p))
        await hub.sync()
        await hub.wait_for_subscribers(("ping", "x"))
        for i in range(300):  # ~0.6 s of work queued at the echo actor
            hub.publish(actors.Key("ping", "x"), i)
        await eventually(lambda: len(pongs) > 0, 10, "the echo actor started handling")
        proc.signal(signal.SIGTERM)  # with most of the 300 still queued: the drain must finish them
        code = await asyncio.get_running_loop().run_in_executor(None, proc.proc.wait, 20)
        assert code == 0, proc.log()[-2000:]
        await eventually(lambda: len(pongs) >= 300, 5, "300 pongs")
        assert pongs == list(range(300))
    finally:
        proc.close()
        await hub.close()


async def test_an_actor_failing_repeatedly_makes_the_process_exit_one(broker):
    proc = ActorProcess.launch(broker, "tests.system.integration.sample_actors:Failing", name="failing")
    hub = await actors.connect(broker.frontend, broker.backend, name="driver")
    try:
        await hub.wait_for_subscribers(("boom",))
        for i in range(3):
            hub.publish(actors.Key("boom"), i)
        code = await asyncio.get_running_loop().run_in_executor(None, proc.proc.wait, 20)
        assert code == 1
        assert "3 consecutive failures" in proc.log()
    finally:
        proc.close()
        await hub.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.system.integration.sample_actors:NotAnActor"], "is not a subclass of actors.Actor"),
        (
            ["tests.system.integration.nowhere:Echo"],
            "cannot import module 'tests.system.integration.nowhere'",
        ),
        (["nopkg_anywhere.model:Model"], "run from the directory that holds nopkg_anywhere/"),
        (["no_colon"], "is not 'module:Class'"),
        (["--config", "/nonexistent/group.toml"], "/nonexistent/group.toml: no such config file"),
    ],
)
def test_bad_targets_and_configs_fail_with_a_clear_one_line_error(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "tickbus", "run", "--frontend", "tcp://127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
