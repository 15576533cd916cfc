"""The OTLP/HTTP exporters send what the library's send: the same requests, as a collector receives them.

A real HTTP server on loopback plays the collector; each case exports the same spans or metrics
through tickbus's exporter and the library's, and compares the requests (path, content type, the
decoded body) — compressed too, since the library's client compresses what it is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.common.http import Compression
from opentelemetry.exporter.otlp.json.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import Link, NonRecordingSpan, SpanKind, set_span_in_context

from observability._otlp_http import MetricRequestExporter, SpanRequestExporter

from ._otlp import Collector, otlp_collector
from .test_metric_json import collected
from .test_span_json import REMOTE, provider


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as received:
        yield received


def spans() -> list[Any]:
    """The kinds of span tickbus makes (a producer, a consumer with a remote parent, a link, an
    exception), and one of another scope, from a real SDK tracer."""
    made, keep = provider()
    tracer = made.get_tracer("tickbus", "0.1.0")
    tracer.start_span("publish tick", attributes={"messaging.system": "tickbus", "n": 3}).end()
    consumer = tracer.start_span("process tick")
    consumer.record_exception(ValueError("bad tick"))
    consumer.end()
    tracer.start_span(
        "child",
        context=set_span_in_context(NonRecordingSpan(REMOTE)),
        kind=SpanKind.CONSUMER,
        links=[Link(REMOTE, {"why": "sent"})],
    ).end()
    made.get_tracer("another").start_span("ok").end()
    return keep.spans


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.GZIP])
def test_spans_are_sent_as_the_library_sends_them(collector, compression) -> None:
    batch = spans()
    for exporter_type in (SpanRequestExporter, OTLPSpanExporter):
        exporter = exporter_type(endpoint=collector.url + "/v1/traces", compression=compression)
        assert exporter.export(batch) == SpanExportResult.SUCCESS
        exporter.shutdown()
    ours, theirs = collector.requests
    assert ours == theirs
    assert ours[0] == "/v1/traces" and ours[1] == "application/json"
    assert len([s for rs in ours[2]["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]) == 4


@pytest.mark.parametrize("exemplars", [False, True], ids=["tickbus-encoded", "exemplars-library-encoded"])
def test_metrics_are_sent_as_the_library_sends_them(collector, exemplars) -> None:
    data = collected(exemplars=exemplars)
    for exporter_type in (MetricRequestExporter, OTLPMetricExporter):
        exporter = exporter_type(endpoint=collector.url + "/v1/metrics")
        assert exporter.export(data) == MetricExportResult.SUCCESS
        exporter.shutdown()
    ours, theirs = collector.requests
    assert ours == theirs
    assert ours[0] == "/v1/metrics" and ours[2]["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]


def test_an_empty_collection_and_a_split_export_are_sent_as_the_library_sends_them(collector) -> None:
    empty = MetricsData(resource_metrics=[])
    for exporter_type in (MetricRequestExporter, OTLPMetricExporter):  # no resource metrics
        assert (
            exporter_type(endpoint=collector.url + "/v1/metrics").export(empty) == MetricExportResult.SUCCESS
        )
    assert collector.requests[0] == collector.requests[1]
    collector.requests.clear()
    data = collected(exemplars=False)
    for exporter_type in (MetricRequestExporter, OTLPMetricExporter):  # exports of at most two points
        exporter = exporter_type(endpoint=collector.url + "/v1/metrics", max_export_batch_size=2)
        assert exporter.export(data) == MetricExportResult.SUCCESS
    half = len(collector.requests) // 2
    assert half > 1 and collector.requests[:half] == collector.requests[half:]


def test_a_refused_request_fails_the_export_without_raising(collector) -> None:
    collector.status = 400  # a client error: the library's client does not retry it
    assert (
        SpanRequestExporter(endpoint=collector.url + "/v1/traces").export(spans()) == SpanExportResult.FAILURE
    )
    data = collected(exemplars=False)
    assert (
        MetricRequestExporter(endpoint=collector.url + "/v1/metrics").export(data)
        == MetricExportResult.FAILURE
    )
    assert len(collector.requests) == 2


def test_an_export_after_shutdown_fails_as_the_librarys_does(collector) -> None:
    exporter = SpanRequestExporter(endpoint=collector.url + "/v1/traces")
    exporter.shutdown()
    assert exporter.export(spans()) == SpanExportResult.FAILURE
    metrics = MetricRequestExporter(endpoint=collector.url + "/v1/metrics")
    metrics.shutdown()
    assert metrics.export(collected(exemplars=False)) == MetricExportResult.FAILURE
    assert collector.requests == []
