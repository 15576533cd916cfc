"""Metrics with the real OpenTelemetry SDK: local histograms injected at collection, every exporter.

Each test uses its own ``Metrics()`` (not the process-wide ``observability.metrics``), real readers,
real files and real HTTP servers on loopback.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, MetricsData
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from actors import Actor, BrokerCopies, Hub, HubStatistics, Key, handler
from actors.testing import eventually, free_tcp_port
from observability import Histogram, Metrics, MetricsError
from observability._histogram_export import (
    DEFAULT_BOUNDS,
    HistogramInjector,
    HistogramMetric,
    HistogramSeries,
    data_point,
)

from ._otlp import otlp_collector


class Echo(Actor):
    name = "echo"

    @handler(("ping", "*"))
    def on_ping(self, key: Key, payload: Any) -> None:
        self.publish(("pong", *key[1:]), payload)


class StoppedBroker:
    """A broker-like source whose statistics() raises, as a stopped broker's does."""

    def statistics(self) -> Any:
        raise RuntimeError("broker is not running")


class _InMemoryReader(InMemoryMetricReader):
    """The SDK's in-memory reader with the same one-method override as the shipped readers."""

    def __init__(self, injector: HistogramInjector) -> None:
        self._injector = injector
        super().__init__()

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        super()._receive_metrics(self._injector(metrics_data), timeout_millis, **kwargs)


@pytest.fixture
async def echo() -> Any:
    hub = Hub(name="group")
    actor = Echo(hub)
    await actor.start()
    for i in range(40):
        hub.publish(Key("ping", "x"), i)
    await eventually(lambda: actor.statistics().handled == 40, 5, "40 pings handled")
    for ns in (1_500, 40_000, 3_000_000):  # in-process messages have no header: no latency of their own
        actor.latency_ns.record(ns)
    yield hub, actor
    await actor.stop()


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    m = Metrics()
    yield m
    m.disable()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _points(line: dict[str, Any], name: str) -> list[dict[str, Any]]:
    for scope in line["resourceMetrics"][0]["scopeMetrics"]:
        for metric in scope["metrics"]:
            if metric["name"] == name:
                data = metric.get("sum") or metric.get("histogram") or metric.get("gauge")
                return list(data["dataPoints"])
    raise AssertionError(f"{name} not exported")


@given(st.lists(st.integers(0, 20 * 10**9), min_size=1, max_size=300))
def test_rebinned_point_counts_each_value_in_its_exact_bucket_or_the_next_one_up(values):
    h = Histogram()
    for v in values:
        h.record(v)
    point = data_point(HistogramSeries(h, {"a": "b"}, 1), now_ns=2)
    bounds_ns = [b * 1e9 for b in DEFAULT_BOUNDS]
    exact = [0] * (len(bounds_ns) + 1)
    for v in values:
        exact[next((i for i, b in enumerate(bounds_ns) if v <= b), len(bounds_ns))] += 1
    assert point.count == len(values) == sum(point.bucket_counts)
    assert list(point.explicit_bounds) == list(DEFAULT_BOUNDS)
    # never optimistic (cumulative counts at most the exact ones), and off by at most one bucket
    got_cum = exact_cum = exact_before = 0
    for got, want in zip(point.bucket_counts, exact, strict=True):
        got_cum, exact_before, exact_cum = got_cum + got, exact_cum, exact_cum + want
        assert exact_before <= got_cum <= exact_cum
    assert point.sum == pytest.approx(sum(values) / 1e9)
    assert point.min <= min(values) / 1e9 * (1 + 1e-12) and point.max == pytest.approx(max(values) / 1e9)


def test_an_empty_histogram_exports_zero_counts():
    point = data_point(HistogramSeries(Histogram(), {}, 1), now_ns=2)
    assert point.count == 0 and point.sum == 0 and set(point.bucket_counts) == {0}


def test_injected_histogram_reaches_a_real_sdk_reader_in_the_meters_scope():
    h = Histogram()
    h.record(2_500_000)
    scope = InstrumentationScope("tickbus", "1")
    feed = [HistogramMetric("tickbus.test.duration", "s", "d", [HistogramSeries(h, {"k": "v"}, 5)])]
    reader = _InMemoryReader(HistogramInjector(lambda: feed, scope, lambda: 10))
    provider = MeterProvider(metric_readers=[reader])
    try:
        provider.get_meter("tickbus", "1").create_observable_counter(
            "tickbus.test.count", callbacks=[lambda options: []], unit="{x}"
        )
        provider.get_meter("tickbus", "1").create_counter("tickbus.test.sync").add(1)
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    assert data is not None
    (scope_metrics,) = data.resource_metrics[0].scope_metrics  # merged into the meter's scope
    by_name = {m.name: m for m in scope_metrics.metrics}
    assert set(by_name) == {"tickbus.test.sync", "tickbus.test.duration"}
    (point,) = by_name["tickbus.test.duration"].data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert point.count == 1 and point.attributes == {"k": "v"} and point.start_time_unix_nano == 5
    assert point.bucket_counts[DEFAULT_BOUNDS.index(0.005)] == 1


async def test_otlp_file_holds_actor_hub_counters_and_histograms_with_bucket_counts(echo, metrics, tmp_path):
    hub, actor = echo
    path = tmp_path / "m.jsonl"
    metrics.enable(
        "unit", actors=[actor], hubs=[hub], brokers=[StoppedBroker()], otlp_file=path, interval=3600
    )
    assert metrics.flush()
    metrics.disable()  # exports once more
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 2
    last = lines[-1]
    resource = {a["key"]: a["value"] for a in last["resourceMetrics"][0]["resource"]["attributes"]}
    assert resource["service.name"] == {"stringValue": "unit"}
    (consumed,) = _points(last, "messaging.client.consumed.messages")
    assert consumed["asInt"] == "40"
    attributes = {a["key"]: a["value"]["stringValue"] for a in consumed["attributes"]}
    assert attributes == {
        "tickbus.actor": "echo",
        "messaging.system": "tickbus",
        "messaging.destination.name": "ping",
    }
    (sent,) = _points(last, "messaging.client.sent.messages")
    assert sent["asInt"] == "40"
    assert _points(last, "tickbus.hub.messages.published")[0]["asInt"] == "80"
    # liveness and lag: an in-process hub has none, but they are exported, the lag as a float
    assert _points(last, "tickbus.hub.slow")[0]["asInt"] == "0"
    assert _points(last, "tickbus.hub.lag")[0]["asDouble"] == 0.0
    assert _points(last, "tickbus.hub.publishers.gone")[0]["asInt"] == "0"
    (handler_time,) = _points(last, "messaging.process.duration")
    # timed for at most one message per 50 us (actors._actor): a burst of 40 is sampled
    assert 1 <= int(handler_time["count"]) <= 40
    assert sum(map(int, handler_time["bucketCounts"])) == int(handler_time["count"])
    (latency,) = _points(last, "tickbus.actor.latency")
    assert latency["count"] == "3" and latency["explicitBounds"] == list(DEFAULT_BOUNDS)
    assert [int(n) for n in latency["bucketCounts"]].count(1) == 3
    assert _points(last, "process.memory.usage")[0]["asInt"] != "0"
    names = {m["name"] for s in last["resourceMetrics"][0]["scopeMetrics"] for m in s["metrics"]}
    assert not any(n.startswith("tickbus.broker") for n in names)  # the failing source is skipped


async def test_prometheus_endpoint_serves_counters_and_histogram_buckets(echo, metrics):
    hub, actor = echo
    port = free_tcp_port()
    metrics.enable("unit", actors=[actor], hubs=[hub], prometheus_port=port, otlp_file=False)
    assert metrics.statistics().prometheus_url == f"http://127.0.0.1:{port}/metrics"
    text = _get(f"http://127.0.0.1:{port}/metrics")
    assert 'messaging_client_consumed_messages_total{messaging_destination_name="ping"' in text
    buckets = [line for line in text.splitlines() if line.startswith("tickbus_actor_latency_seconds_bucket")]
    assert len(buckets) == len(DEFAULT_BOUNDS) + 1
    assert any('le="+Inf"' in line and line.endswith(" 3.0") for line in buckets)
    assert 'tickbus_actor_latency_seconds_count{otel_scope_name="tickbus"' in text
    assert "messaging_process_duration_seconds_bucket" in text
    assert "process_cpu_time_seconds_total" in text
    metrics.disable()
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/metrics")


def test_a_busy_metrics_port_names_the_port_and_the_fix(metrics):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MetricsError, match=rf"127\.0\.0\.1:{port} cannot listen .*--metrics-port"):
            metrics.enable("unit", prometheus_port=port, otlp_file=False)
    assert not metrics.enabled


def test_metrics_port_comes_from_the_environment_and_bad_values_are_refused(metrics, monkeypatch):
    port = free_tcp_port()
    monkeypatch.setenv("TICKBUS_METRICS_PORT", str(port))
    metrics.enable("unit", otlp_file=False)
    assert "# TYPE process_cpu_time_seconds_total counter" in _get(f"http://127.0.0.1:{port}/metrics")
    metrics.disable()
    monkeypatch.setenv("TICKBUS_METRICS_PORT", "http")
    with pytest.raises(MetricsError, match="TICKBUS_METRICS_PORT='http' is not a TCP port"):
        metrics.enable("unit", otlp_file=False)


def test_the_default_file_is_named_after_the_service_in_the_data_dir(metrics, monkeypatch, tmp_path):
    monkeypatch.setenv("TICKBUS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", raising=False)
    metrics.enable("my group/1", interval=3600)
    assert metrics.statistics().file == str(tmp_path / "metrics" / "my_group_1.jsonl")
    metrics.flush()
    assert (tmp_path / "metrics" / "my_group_1.jsonl").read_text().count("\n") == 1


async def test_otlp_http_json_goes_to_the_standard_endpoint_variable(echo, metrics, monkeypatch):
    _hub, actor = echo
    with otlp_collector() as collector:
        try:
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
            metrics.enable("unit", actors=[actor], interval=3600)
            assert metrics.statistics().file is None
            assert metrics.statistics().otlp_endpoint == f"{collector.url}/v1/metrics"
            assert metrics.flush()
            assert collector.arrived.wait(5)
        finally:
            metrics.disable()  # its last export goes to the collector too, before it stops
    path, _, body = collector.requests[0]
    assert path == "/v1/metrics"
    (latency,) = _points(body, "tickbus.actor.latency")
    assert latency["count"] == "3"


def test_otel_sdk_disabled_turns_enable_into_a_no_op(metrics, monkeypatch, tmp_path):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    metrics.enable("unit", otlp_file=tmp_path / "m.jsonl", prometheus_port=free_tcp_port())
    assert not metrics.enabled and not Path(tmp_path / "m.jsonl").exists()


class _PairHub:
    """A hub-like source on two brokers, the second of which lost copies."""

    name = "pair"

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            published=0,
            delivered=0,
            listener_errors=0,
            patterns=0,
            brokers=2,
            brokers_up=1,
            by_broker=(
                BrokerCopies("tcp://a:5550", up=True, missed=0, redundant=7, repeated=0),
                BrokerCopies(
                    "tcp://b:5550",
                    up=False,
                    missed=12,
                    redundant=30,
                    repeated=1,
                    send_dropped=3,
                    implausible=2,
                ),
            ),
        )


def test_a_hub_on_two_brokers_exports_each_brokers_copies(metrics, tmp_path):
    path = tmp_path / "m.jsonl"
    metrics.enable("unit", hubs=[_PairHub()], otlp_file=path, interval=3600)
    assert metrics.flush()
    (line,) = [json.loads(line) for line in path.read_text().splitlines()]

    def by_broker(name: str) -> dict[str, str]:
        points = _points(line, name)
        return {
            {a["key"]: a["value"]["stringValue"] for a in p["attributes"]}["tickbus.broker"]: p["asInt"]
            for p in points
        }

    assert by_broker("tickbus.hub.broker.missed") == {"tcp://a:5550": "0", "tcp://b:5550": "12"}
    assert by_broker("tickbus.hub.broker.redundant") == {"tcp://a:5550": "7", "tcp://b:5550": "30"}
    assert by_broker("tickbus.hub.broker.repeated") == {"tcp://a:5550": "0", "tcp://b:5550": "1"}
    assert by_broker("tickbus.hub.broker.up") == {"tcp://a:5550": "1", "tcp://b:5550": "0"}
    assert by_broker("tickbus.hub.broker.send.dropped") == {"tcp://a:5550": "0", "tcp://b:5550": "3"}
    assert by_broker("tickbus.hub.broker.implausible") == {"tcp://a:5550": "0", "tcp://b:5550": "2"}
    (point,) = [p for p in _points(line, "tickbus.hub.broker.up") if p["asInt"] == "0"]
    assert {a["key"] for a in point["attributes"]} == {"tickbus.hub", "tickbus.broker"}
