"""Metrics of real `tickbus run` and `tickbus broker` processes: OTLP JSON file, Prometheus endpoint,
and a real Prometheus server scraping an actor process.

Prometheus comes from the Debian package (``tests/ensure_system_deps.sh``, run by ``make test``); the
scrape test skips, naming the reason, when it is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import actors
from actors.testing import ActorProcess, BrokerProcess, free_tcp_port
from observability import HISTOGRAM_BOUNDS as DEFAULT_BOUNDS

T = TypeVar("T")
ECHO = "tests.system.integration.sample_actors:Echo"
PINGS = 50


@pytest.fixture
def broker():
    with BrokerProcess.start() as running:
        yield running


async def _poll(fetch: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """Call the blocking ``fetch`` (in a thread) until it returns something; ``TimeoutError`` naming ``what``.

    For state behind an HTTP API or a file another process writes: there is no event to wait on.
    """
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(fetch)
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not show within {timeout}s")
        await asyncio.sleep(every)  # polling is the point: there is no event


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


async def _ping_echo(broker: BrokerProcess, count: int = PINGS) -> None:
    """Publish ``count`` pings through the broker and wait for every pong from the echo actor."""
    hub = await actors.connect(broker.frontend, broker.backend, name="driver")
    pongs = asyncio.Event()
    seen: list[int] = []

    def on_pong(key: actors.Key, payload: int) -> None:
        seen.append(payload)
        if len(seen) == count:
            pongs.set()

    try:
        actors.Subscriber(hub, "s").add_sync_listener(actors.Key("pong", "*"), on_pong)
        await hub.sync()
        await hub.wait_for_subscribers(("ping", "x"))
        for i in range(count):
            hub.publish(actors.Key("ping", "x"), i)
        await asyncio.wait_for(pongs.wait(), 10)
    finally:
        await hub.close()


def _metric(line: dict[str, Any], name: str) -> list[dict[str, Any]]:
    for scope in line["resourceMetrics"][0]["scopeMetrics"]:
        for metric in scope["metrics"]:
            if metric["name"] == name:
                return list((metric.get("sum") or metric.get("histogram"))["dataPoints"])
    return []


async def test_tickbus_run_writes_actor_counters_and_latency_histogram_to_the_otlp_file(broker):
    proc = ActorProcess.launch(broker, ECHO, name="echo-group", env={"OTEL_METRIC_EXPORT_INTERVAL": "200"})
    path = Path(proc.tmpdir.name) / "metrics" / "echo-group.jsonl"  # type: ignore[union-attr]
    try:
        await _ping_echo(broker)

        def exported() -> dict[str, Any] | None:
            lines = path.read_text().splitlines() if path.exists() else []
            last = json.loads(lines[-1]) if lines else None
            consumed = _metric(last, "messaging.client.consumed.messages") if last else []
            lag = _metric(last, "tickbus.loop.lag") if last else []  # `tickbus run` probes every 0.25 s
            # proto3 JSON leaves out a zero count
            done = consumed and consumed[0]["asInt"] == str(PINGS) and lag and lag[0].get("count")
            return last if done else None

        last = await _poll(exported, 10, f"{PINGS} consumed messages and a loop-lag sample in {path}")
        (latency,) = _metric(last, "tickbus.actor.latency")
        # the histograms time at most one message per 50 us (actors._actor): a burst is sampled
        assert 1 <= int(latency["count"]) <= PINGS
        assert int(latency["count"]) == sum(int(n) for n in latency["bucketCounts"])
        assert len(latency["bucketCounts"]) == len(latency["explicitBounds"]) + 1
        (handled,) = _metric(last, "messaging.process.duration")
        assert 1 <= int(handled["count"]) <= PINGS
        (sent,) = _metric(last, "messaging.client.sent.messages")
        assert sent["asInt"] == str(PINGS)
        assert int(_metric(last, "tickbus.hub.messages.received")[0]["asInt"]) >= PINGS  # + '$' keys
        assert _metric(last, "tickbus.hub.gaps")[0]["asInt"] == "0"
        assert proc.stop() == 0
        # after the run: the actors' drained values were exported before the runner let them go
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        final = [line for line in lines if _metric(line, "tickbus.actor.latency")][-1]
        assert int(_metric(final, "tickbus.actor.latency")[0]["count"]) >= int(latency["count"])
    finally:
        proc.close()


async def test_tickbus_broker_serves_forwarded_messages_on_its_metrics_port():
    port = free_tcp_port()
    with BrokerProcess.start(extra_args=["--metrics-port", str(port)]) as broker:
        proc = ActorProcess.launch(broker, ECHO, name="echo")
        try:
            await _ping_echo(broker, 10)
            text = await _poll(
                lambda: (
                    (t := _get(f"http://127.0.0.1:{port}/metrics"))
                    and "tickbus_broker_io_bytes_total" in t
                    and t
                ),
                10,
                "broker metrics",
            )
        finally:
            proc.close()
    forwarded = next(
        line for line in text.splitlines() if line.startswith("tickbus_broker_messages_forwarded_total")
    )
    assert float(forwarded.rsplit(" ", 1)[1]) >= 20  # pings and pongs (and the broker's own stats)
    assert 'tickbus_broker_io_bytes_total{network_io_direction="transmit"' in text
    assert "tickbus_broker_subscribers " in text or "tickbus_broker_subscribers{" in text


def test_tickbus_run_exits_2_naming_the_port_when_the_metrics_port_is_taken():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tickbus", "run", ECHO, "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert done.returncode == 2
    assert f"metrics endpoint 127.0.0.1:{port} cannot listen" in done.stderr
    assert "--metrics-port" in done.stderr


@contextlib.contextmanager
def _prometheus(target_port: int) -> Iterator[str]:
    """A real Prometheus scraping 127.0.0.1:``target_port`` every second; yields its base URL.

    Its config and storage live in a temporary directory, removed with it; it listens on loopback.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(
            "PROMETHEUS NOT INSTALLED: the real-Prometheus scrape test did not run; install the Debian "
            "package 'prometheus' (as root: bash tests/ensure_system_deps.sh, which `make test` runs)"
        )
    web_port = free_tcp_port()
    with tempfile.TemporaryDirectory(prefix="tickbus-prometheus-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: tickbus\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        with open(Path(tmp) / "prometheus.log", "w") as log:
            prometheus = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={Path(tmp) / 'data'}",
                    f"--web.listen-address=127.0.0.1:{web_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                yield f"http://127.0.0.1:{web_port}"
            finally:
                prometheus.terminate()
                try:
                    prometheus.wait(10)
                except subprocess.TimeoutExpired:
                    prometheus.kill()
                    prometheus.wait()


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    text = _get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    if text is None:
        return []
    answer = json.loads(text)
    return list(answer["data"]["result"]) if answer.get("status") == "success" else []


async def test_a_real_prometheus_scrapes_the_actor_counter_and_latency_histogram(broker):
    metrics_port = free_tcp_port()
    proc = ActorProcess.launch(broker, ECHO, name="echo", env={"TICKBUS_METRICS_PORT": str(metrics_port)})
    try:
        with _prometheus(metrics_port) as base:
            await _ping_echo(broker)
            counter = await _poll(
                lambda: (
                    [
                        r
                        for r in _query(
                            base, 'messaging_client_consumed_messages_total{tickbus_actor="echo"}'
                        )
                        if float(r["value"][1]) == PINGS
                    ]
                    or None
                ),
                15,
                f"Prometheus query for the echo actor's {PINGS} consumed messages",
            )
            buckets = _query(base, 'tickbus_actor_latency_seconds_bucket{tickbus_actor="echo"}')
            count = _query(base, 'tickbus_actor_latency_seconds_count{tickbus_actor="echo"}')
    finally:
        proc.close()
    print("Prometheus returned:", json.dumps(counter), json.dumps(count), sep="\n")
    print("buckets:", sorted((float(b["metric"]["le"]), b["value"][1]) for b in buckets))
    assert counter[0]["metric"]["messaging_destination_name"] == "ping"
    assert counter[0]["metric"]["job"] == "tickbus"
    assert sorted(float(b["metric"]["le"]) for b in buckets) == [*DEFAULT_BOUNDS, float("inf")]
    inf = next(b for b in buckets if b["metric"]["le"] == "+Inf")
    assert float(inf["value"][1]) == float(count[0]["value"][1]) >= 1  # sampled: at most one per 50 us
