"""Logs an operator can use, from real ``tickbus run`` and ``tickbus broker`` processes: a startup
or configuration failure is one line and exit status 2; a clean stop warns about nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import actors
from actors.testing import ActorProcess, BrokerProcess, eventually

ROOT = Path(__file__).resolve().parents[3]

BAD_START = """
from actors import Actor

class BadStart(Actor):
    async def on_start(self):
        self.limit = self.config["limit"]
"""

BIG_HEAP = """
from actors import Actor, every

HEAP = [[i] for i in range(2_000_000)]  # a big module-level heap: the start's gc.collect() takes ~0.15 s

class Ticker(Actor):
    name = "ticker"

    @every(0.05)
    def tick(self):
        self.publish(("tick", "x"), 1)
"""


def tickbus(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "tickbus", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": path, "TICKBUS_DATA_DIR": str(tmp_path), **env},
    )


@pytest.fixture(scope="module")
def broker():
    with BrokerProcess.start() as running:
        yield running


@pytest.mark.parametrize(
    "case",
    [
        (
            ("badstart", BAD_START),
            "badstart:BadStart",
            {},
            "tickbus run: actor 'badstart' (badstart:BadStart) failed to start: KeyError: 'limit' "
            "({dir}/badstart.py:6 in on_start)",
        ),
        (
            ("broken", "import os\nx = (\n"),
            "broken:Actor",
            {},
            "tickbus run: cannot import module 'broken' for actor 'broken:Actor': SyntaxError: '(' was never "
            "closed (broken.py, line 2)",
        ),
        (
            None,
            "nowhere:Actor",
            {"TICKBUS_LOG_LEVEL": "LOUD"},
            "tickbus run: TICKBUS_LOG_LEVEL='LOUD' is not a",
        ),
    ],
    ids=["on_start", "syntax_error", "log_level"],
)
def test_a_startup_failure_is_one_json_record_and_exit_status_two(broker, tmp_path, case):
    module, target, env, message = case
    message = message.format(dir=tmp_path)
    if module is not None:
        (tmp_path / f"{module[0]}.py").write_text(module[1])
    result = tickbus(
        tmp_path, "run", target, "--frontend", broker.frontend, "--backend", broker.backend, **env
    )
    assert result.returncode == 2, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    errors = [r for r in records if r["level"] != "INFO"]
    assert len(errors) == 1 and errors[0] is records[-1], result.stderr
    assert errors[0]["message"].startswith(message) and errors[0]["exit_status"] == 2
    assert errors[0]["level"] == "ERROR"
    if module is None or target.startswith("broken"):  # before anything started: nothing else said
        assert len(records) == 1


def test_a_startup_failure_on_a_terminal_is_one_line_without_a_traceback(broker, tmp_path):
    (tmp_path / "badstart.py").write_text(BAD_START)
    result = tickbus(
        tmp_path,
        "run",
        "badstart:BadStart",
        "--frontend",
        broker.frontend,
        "--backend",
        broker.backend,
        TICKBUS_LOG_JSON="0",
    )
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert "ERROR" in last
    assert last.endswith(f"failed to start: KeyError: 'limit' ({tmp_path}/badstart.py:6 in on_start)")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3  # metrics, tracing, this


async def test_a_clean_stop_leaves_no_warning_at_the_broker_or_the_group(tmp_path):
    # A broker of its own: on the module's, earlier tests' departures could hold the broker's 1 s
    # per-kind log limit (a loaded machine delays them), and this group's "left" lines with it.
    path = os.pathsep.join(p for p in (str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    (tmp_path / "bigheap.py").write_text(BIG_HEAP)
    with BrokerProcess.start() as broker:
        group = ActorProcess.launch(broker, "bigheap:Ticker", name="ticker", env={"PYTHONPATH": path})
        hub = await actors.connect(broker.frontend, broker.backend, name="watcher")
        try:
            ticks: list[int] = []
            actors.Subscriber(hub, "watcher").add_sync_listener(("tick", "x"), lambda key, n: ticks.append(n))
            await eventually(lambda: len(ticks) >= 10, 10, "the group ticking")  # it runs a while first
            assert group.stop() == 0
            log = group.log()
            # the group's two connections; the watcher leaves only after this
            await eventually(lambda: broker.log().count("peer left") >= 2, 10, "the broker saw it leave")
        finally:
            group.close()
            await hub.close()
        records = [json.loads(line) for line in broker.log().splitlines() if line.startswith("{")]
    assert [r["message"] for r in records if r["level"] != "INFO"] == []
    group_records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [r["message"] for r in group_records if r["level"] != "INFO"] == []  # no slow callback either
