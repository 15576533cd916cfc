"""The example pipeline: its actors in one process on the in-process hub, and the whole demo."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors import Actor, ConfigError, Hub, Key, Subscriber
from examples._processes import broker_endpoints
from examples.demo import percentile
from examples.pipeline import UI, Feed, Model, Strategy, replay_csv

REPO = Path(__file__).resolve().parents[2]


class Collector:
    """Collects the payloads published at ``pattern``; ``done`` is set once ``expected`` arrived."""

    def __init__(self, hub: Hub, pattern: tuple[str, ...], expected: int = 1) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.keys: list[Key] = []
        self.expected = expected
        self.done = asyncio.Event()
        Subscriber(hub, f"collector-{pattern}").add_sync_listener(pattern, self._on_message)

    def _on_message(self, key: Key, payload: dict[str, Any]) -> None:
        self.keys.append(key)
        self.payloads.append(payload)
        if len(self.payloads) >= self.expected:
            self.done.set()

    async def wait(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        await asyncio.wait_for(self.done.wait(), timeout)
        return self.payloads


async def start_all(*actors: Actor) -> Callable[[], Any]:
    """Start ``actors`` in order (subscribers first); return a coroutine function stopping them."""
    for actor in actors:
        await actor.start()

    async def stop_all() -> None:
        for actor in reversed(actors):
            await actor.stop(drain_timeout=2.0)

    return stop_all


async def test_feed_model_strategy_decide_once_per_tick_in_tick_order_on_the_in_process_hub():
    hub = Hub()
    decisions = Collector(hub, ("decision", "*"), expected=300)
    strategy = Strategy(hub, config={"max_position": 300, "lot": 100})
    stop_all = await start_all(
        strategy, Model(hub), Feed(hub, config={"rate": 20_000, "count": 300, "seed": 7})
    )
    try:
        got = await decisions.wait()
    finally:
        await stop_all()
    assert [d["n"] for d in got] == list(range(1, 301))
    assert all(key == ("decision", d["sym"]) for key, d in zip(decisions.keys, got, strict=True))
    assert {d["action"] for d in got} <= {"buy", "sell", "hold"}
    assert all(abs(d["position"]) <= 300 for d in got)
    assert all(0 < d["latency_ns"] < 5_000_000_000 for d in got)
    assert strategy.statistics().failures == 0


async def test_feed_replays_a_csv_file_once_and_the_model_sees_its_prices(tmp_path: Path):
    path = tmp_path / "ticks.csv"
    rows = [("AAPL", 190.0 + i / 10, 100) for i in range(20)] + [("MSFT", 410.5, 300)]
    path.write_text("symbol,price,size\n" + "".join(f"{s},{p},{n}\n" for s, p, n in rows))
    hub = Hub()
    states = Collector(hub, ("state", "*"), expected=len(rows))
    status = Collector(hub, ("feed", "status"))
    stop_all = await start_all(Model(hub), Feed(hub, config={"csv": str(path), "rate": 10_000}))
    try:
        got = await states.wait()
        final = await status.wait()
    finally:
        await stop_all()
    assert [(s["sym"], s["px"]) for s in got] == [(s, p) for s, p, _ in rows]
    assert got[-2]["ticks"] == 20 and got[-1]["ticks"] == 1
    assert final[-1]["sent"] == len(rows) and final[-1]["done"]


def test_csv_replay_names_the_file_and_line_of_a_bad_row(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("AAPL,190.0,100\nAAPL,oops,100\n")
    with pytest.raises(ConfigError, match=r"bad\.csv:2: expected 'symbol,price,size'"):
        list(replay_csv(path))


async def test_strategy_holds_during_warmup_then_buys_up_to_its_position_limit():
    hub = Hub()
    decisions = Collector(hub, ("decision", "*"), expected=8)
    strategy = Strategy(hub, config={"warmup": 3, "lot": 100, "max_position": 300, "threshold_bp": 1.0})
    await strategy.start()
    try:
        for ticks in range(1, 9):  # fast 1% above slow: a strong buy signal every time
            state = {"sym": "AAPL", "px": 101.0, "fast": 101.0, "slow": 100.0, "ticks": ticks}
            hub.publish(Key("state", "AAPL"), {**state, "vol_bp": 1.0, "t_ns": 0, "n": ticks})
        got = await decisions.wait()
    finally:
        await strategy.stop()
    assert [d["action"] for d in got] == ["hold", "hold", "buy", "buy", "buy", "hold", "hold", "hold"]
    assert [d["position"] for d in got] == [0, 0, 100, 200, 300, 300, 300, 300]


async def test_ui_publishes_a_snapshot_with_the_latest_state_and_decision_per_symbol():
    hub = Hub()
    snapshots = Collector(hub, ("ui", "snapshot"))
    ui = UI(hub)
    await ui.start()
    try:
        hub.publish(Key("state", "MSFT"), {"sym": "MSFT", "px": 410.5, "vol_bp": 3.14159})
        hub.publish(
            Key("decision", "MSFT"),
            {"sym": "MSFT", "px": 410.5, "action": "sell", "position": -100, "signal_bp": -2.5},
        )
        snapshot = (await snapshots.wait())[-1]
    finally:
        await ui.stop()
    assert snapshot["decisions"] == 1 and snapshot["sells"] == 1
    assert snapshot["symbols"]["MSFT"] == {
        "px": 410.5,
        "vol_bp": 3.14,
        "pos": -100,
        "action": "sell",
        "signal_bp": -2.5,
    }


def test_percentile_is_the_nearest_rank():
    values = list(range(1, 1001))
    assert [percentile(values, q) for q in (0.5, 0.99, 0.999, 1.0)] == [500, 990, 999, 1000]
    assert percentile([7], 0.999) == 7


def test_the_demo_reaches_its_broker_by_unix_sockets_unless_their_paths_are_too_long(tmp_path: Path):
    assert broker_endpoints(tmp_path, "ipc") == (
        f"ipc://{tmp_path}/frontend.sock",
        f"ipc://{tmp_path}/backend.sock",
    )
    deep = tmp_path / ("d" * 100)  # sun_path holds 107 bytes
    for frontend, backend in (broker_endpoints(deep, "ipc"), broker_endpoints(tmp_path, "tcp")):
        assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", frontend) and re.fullmatch(r"tcp://127\.0\.0\.1:\d+", backend)


def run_demo(tmp_path: Path, *extra: str) -> str:
    """``python -m examples.demo`` for a few seconds with its logs and data in ``tmp_path``; its
    output, once it exited 0 with result OK."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the demo's log directory lands in tmp_path
    args = ["--seconds", "4", "--rate", "1000", "--data-dir", str(tmp_path)]
    args += ["--allow-warnings"]  # a loaded CI machine may log slow callbacks; they are listed, not fatal
    result = subprocess.run(
        [sys.executable, "-m", "examples.demo", *args, *extra],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, f"demo failed:\n{out}\n{result.stderr[-3000:]}"
    assert re.search(r"^\s*result\s+OK$", out, re.MULTILINE), out
    return out


@pytest.mark.slow
def test_demo_runs_five_processes_without_gaps_and_prints_latency(tmp_path: Path):
    out = run_demo(tmp_path)
    assert re.search(r"broker ready: ipc://\S+/frontend\.sock -> ipc://\S+/backend\.sock", out), out
    assert "warnings in logs" in out  # the demo reads its children's logs (`make demo` fails on any)
    assert re.search(r"^\s*gaps\s+0$", out, re.MULTILINE), out
    decisions = re.search(r"^\s*decisions received\s+([\d,]+)$", out, re.MULTILINE)
    assert decisions is not None and int(decisions[1].replace(",", "")) > 0, out
    assert re.search(r"p99 \d+\.\d+ ms", out), out


@pytest.mark.slow
def test_demo_without_the_profiler_starts_none_and_still_reports_latency(tmp_path: Path):
    out = run_demo(tmp_path, "--profile-hz", "0", "--transport", "tcp")
    assert "profiler ready" not in out and "profiler=" not in out and "Austin at" not in out, out
    assert re.search(r"broker ready: tcp://127\.0\.0\.1:\d+ -> tcp://127\.0\.0\.1:\d+", out), out
    assert re.search(r"p99 \d+\.\d+ ms", out), out


@pytest.mark.slow
def test_demo_with_realtime_runs_the_broker_and_groups_at_sched_fifo(tmp_path: Path):
    """``--realtime 20`` (deploy/README.md, "Lower tail latency"): the broker and every group log
    that they run at SCHED_FIFO priority 20, and the demo still ends OK."""
    if shutil.which("chrt") is None:
        pytest.skip("chrt is not installed (Debian package util-linux)")
    probe = subprocess.run(["chrt", "--fifo", "20", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(
            f"this machine refuses SCHED_FIFO to this user (needs CAP_SYS_NICE): {probe.stderr.strip()}"
        )
    out = run_demo(tmp_path, "--realtime", "20", "--keep-logs")
    assert "broker and groups at SCHED_FIFO priority 20" in out
    logs = {path.stem: path.read_text() for path in tmp_path.glob("tickbus-demo-*/*.log")}
    for name in ("broker", "feed", "model", "strategy", "ui"):
        assert "runs at SCHED_FIFO priority 20 (real-time scheduling)" in logs[name], (
            name,
            logs[name][-2000:],
        )
    assert "real-time scheduling" not in logs["profiler"]  # the collector stays in the normal class
