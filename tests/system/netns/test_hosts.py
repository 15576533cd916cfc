"""Several hosts: the example pipeline across three network namespaces, CURVE on, and a cut cable.

Broker on host a; feed and model (two ``tickbus run`` groups) on host b; strategy and the profiling
collector on host c; the test itself observes from the root namespace through the same switch, with
its own allow-listed key. Every byte between them crosses veth cables and a bridge.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import actors
from actors import ClientCurve, Key
from actors.testing import eventually
from observability import SamplerError
from observability.profiling import ProfileStore, austin_binary
from tests.system.netns.hosts import HostProcess, NetnsUnavailableError, Network, probe

pytestmark = pytest.mark.timeout(240)

FE_PORT, BE_PORT = 5550, 5551
RATE = 400  # ticks per second
CUT_SECONDS = 5.0
BROKER_HEARTBEAT = ("0.5", "1.5")  # ivl, timeout: a silent peer is dropped within 2 s
GONE_WITHIN = 3.0


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    try:
        probe()
    except NetnsUnavailableError as exc:
        pytest.skip(f"SKIPPED LOUDLY: the several-hosts tier cannot run on this machine: {exc}")
    net = Network()
    try:
        net.build()
        yield net
    finally:
        net.close()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    made: dict[str, Path] = {}
    for name in ("broker", "host-b", "host-c", "observer"):
        result = subprocess.run(
            [sys.executable, "-m", "tickbus", "keys", "generate", name, "--dir", str(tmp_path / "keys")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        made[name], made[f"{name}_secret"] = (Path(p) for p in result.stdout.split())
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    for name in ("host-b", "host-c", "observer"):
        shutil.copy(made[name], allowed)
    made["allowed"] = allowed
    return made


READY_PREFIX = "tickbus profiler ready"  # the line `tickbus profiler` prints once subscribed

def group_toml(name: str, target: str, fe: str, be: str, **config: object) -> str:
    lines = ["[group]", f'name = "{name}"', f'frontend = "{fe}"', f'backend = "{be}"', "", "[[actor]]"]
    lines += [f'class = "examples.pipeline:{target}"', "[actor.config]"]
    lines += [f"{k} = {v!r}" for k, v in config.items()]
    return "\n".join(lines) + "\n"


class Cluster:
    """The hosts' processes: a CURVE broker on host a, and whatever a test starts on b and c."""

    def __init__(self, network: Network, keys: dict[str, Path], tmp_path: Path) -> None:
        self.network, self.keys, self.tmp_path = network, keys, tmp_path
        self.fe = f"tcp://{network.address('a')}:{FE_PORT}"
        self.be = f"tcp://{network.address('a')}:{BE_PORT}"
        self.started: list[HostProcess] = []

    def start(self, host: str, name: str, argv: list[str], env: dict[str, str], ready: str) -> HostProcess:
        child = HostProcess.start(
            self.network, host, name, argv, {"TICKBUS_DATA_DIR": str(self.tmp_path / name), **env}
        )
        self.started.append(child)
        child.wait_stdout(ready, 30)
        return child

    def broker(self) -> HostProcess:
        argv = ["-m", "tickbus", "broker", "--frontend", self.fe, "--backend", self.be]
        argv += ["--curve-secret", str(self.keys["broker_secret"]), "--allow-dir", str(self.keys["allowed"])]
        argv += ["--heartbeat-ivl", BROKER_HEARTBEAT[0], "--heartbeat-timeout", BROKER_HEARTBEAT[1]]
        return self.start("a", "broker", [*argv, "--stats-interval", "0.5"], {}, "tickbus broker ready")

    def client_env(self, host: str) -> dict[str, str]:
        return {
            "TICKBUS_CURVE_SERVERKEY": str(self.keys["broker"]),
            "TICKBUS_CURVE_SECRET": str(self.keys[f"host-{host}_secret"]),
        }

    def group(self, host: str, name: str, target: str, **config: object) -> HostProcess:
        path = self.tmp_path / f"{name}.toml"
        path.write_text(group_toml(name, target, self.fe, self.be, **config))
        argv = ["-m", "tickbus", "run", "--config", str(path)]
        return self.start(host, name, argv, self.client_env(host), "tickbus run ready")

    async def observer(self) -> actors.RemoteHub:
        curve = ClientCurve.from_files(self.keys["broker"], self.keys["observer_secret"])
        return await actors.connect(self.fe, self.be, name="observer", curve=curve)

    def close(self) -> None:
        for child in reversed(self.started):
            child.stop()


@pytest.fixture
def cluster(network: Network, keys: dict[str, Path], tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(network, keys, tmp_path)
    try:
        yield running
    finally:
        running.close()


async def test_pipeline_across_hosts_survives_a_cut_cable_with_exact_gap_accounting(
    network: Network, cluster: Cluster
) -> None:
    observer: actors.RemoteHub | None = None
    try:
        broker = cluster.broker()
        observer = await cluster.observer()
        stats: dict[str, dict[str, Any]] = {}
        feed_status: list[dict[str, Any]] = []
        actors.Subscriber(observer, "o").add_sync_listener(
            Key("$actors", "stats", "*"), lambda k, p: stats.__setitem__(k[2], p)
        )
        actors.Subscriber(observer, "f").add_sync_listener(
            Key("feed", "status"), lambda k, p: feed_status.append(p)
        )
        await observer.sync()

        strategy = cluster.group("c", "strategy", "Strategy")
        model = cluster.group("b", "model", "Model")
        feed = cluster.group("b", "feed", "Feed", rate=RATE, symbols=4, seed=7)

        def received(name: str) -> int:
            return int(stats.get(name, {}).get("hub", {}).get("received", 0))

        await eventually(lambda: received("strategy") > RATE, 20, "states flowing from host b to host c")
        assert "peer gone" not in broker.log()

        cut = time.monotonic()
        network.cut("b")
        await eventually(lambda: broker.first("peer gone", cut) is not None, 10, "the broker reported b gone")
        await eventually(
            lambda: model.first("lost the broker", cut) is not None, 10, "b's hub lost the broker"
        )
        broker_gone = (broker.first("peer gone", cut) or 0.0) - cut
        hub_gone = (model.first("lost the broker", cut) or 0.0) - cut
        await asyncio.sleep(max(0.0, cut + CUT_SECONDS - time.monotonic()))  # the cable stays out 5 s
        network.restore("b")
        restored = time.monotonic()
        before = received("strategy")
        await eventually(lambda: received("strategy") > before + RATE, 20, "traffic resumed across the hosts")
        resumed = time.monotonic() - restored
        gone_lines = [line for _, line in broker.lines if "peer gone" in line]

        # stop along the pipeline, each once its subscriber has accounted for everything published
        assert feed.stop() == 0

        def final(group: str) -> bool:  # the group's last stats message: published after its actors stopped
            return not stats.get(group, {}).get("actors", {}).get(group, {}).get("running", True)

        await eventually(lambda: final("feed"), 10, "the feed's final statistics")
        sent = int(feed_status[-1]["sent"])  # its last status came before its final statistics

        def accounted(group: str) -> int:
            """Messages of the group's one stream handled, dropped by its mailbox, or known lost."""
            final = stats.get(group, {})
            actor = final.get("actors", {}).get(group, {})
            lost = int(final.get("hub", {}).get("gaps", 0))
            return int(actor.get("handled", 0)) + int(actor.get("dropped", 0)) + lost

        def ticks_accounted() -> bool:
            return accounted("model") >= sent

        await eventually(ticks_accounted, 20, "the model accounted for every tick")
        assert model.stop() == 0
        await eventually(lambda: final("model"), 10, "the model's final statistics")
        model_stats = stats["model"]
        states = int(model_stats["actors"]["model"]["published"])

        def states_accounted() -> bool:
            return accounted("strategy") >= states

        await eventually(states_accounted, 20, "the strategy accounted for every state")
        assert strategy.stop() == 0
        await eventually(lambda: final("strategy"), 10, "the strategy's final statistics")
        ticks_hub, states_hub = model_stats["hub"], stats["strategy"]["hub"]
        handled_ticks = model_stats["actors"]["model"]["handled"]
        handled_states = stats["strategy"]["actors"]["strategy"]["handled"]
        print(
            f"\nbroker reported b gone after {broker_gone:.2f} s, b's hub lost the broker after {hub_gone:.2f} s;"
            f" traffic resumed {resumed:.2f} s after the restore\n"
            f"ticks: sent {sent}, handled {handled_ticks}, gaps {ticks_hub['gaps']}\n"
            f"states: published {states}, handled {handled_states}, gaps {states_hub['gaps']}\n"
            + "\n".join(gone_lines)
        )
        assert broker_gone <= GONE_WITHIN, f"the broker took {broker_gone:.2f} s to report host b gone"
        assert any(f"peer gone: {network.address('b')}:" in line for line in gone_lines)
        assert hub_gone <= 1.0 + 3.0 + 0.5, "the hub's own ZMTP heartbeats: 1 s interval, 3 s timeout"
        assert accounted("model") == sent, "ticks: handled + dropped + gaps == sent"
        assert accounted("strategy") == states, "states: handled + dropped + gaps == published"
        assert ticks_hub["gaps"] > 0, "the cut lost ticks, and they were counted"
        assert ticks_hub["duplicates"] == 0 and states_hub["duplicates"] == 0
        assert broker.stop() == 0
    finally:
        if observer is not None:
            await observer.close()


async def test_the_collector_on_host_c_profiles_the_strategy_there_over_curve(
    network: Network, cluster: Cluster, tmp_path: Path
) -> None:
    try:
        austin_binary()
    except SamplerError as exc:
        pytest.skip(f"SKIPPED LOUDLY: the collector part only: {exc}")
    cluster.broker()
    data_dir = tmp_path / "collector"
    argv = ["-m", "tickbus", "profiler", "--window", "2", "--data-dir", str(data_dir)]
    argv += ["--frontend", cluster.fe, "--backend", cluster.be]
    cluster.start("c", "collector", argv, cluster.client_env("c"), READY_PREFIX)
    strategy = cluster.group("c", "strategy", "Strategy")
    cluster.group("b", "model", "Model")
    cluster.group("b", "feed", "Feed", rate=RATE, symbols=4, seed=7)

    def strategy_windows() -> list[Any]:
        store_path = data_dir / "profiles.sqlite"
        if not store_path.exists():
            return []
        with ProfileStore(store_path, create=False) as store:
            windows = store.windows(actor="strategy")
        return [w for w in windows if w.labels.pid == strategy.proc.pid and w.samples > 0]

    await eventually(lambda: bool(strategy_windows()), 30, "a stored window of the strategy on host c")
    assert strategy_windows()[-1].labels.actors == ("strategy",)
