"""MetricLineExporter writes what opentelemetry-exporter-otlp-json-file writes, for every kind of point.

The library's encoder is the reference: each case exports the same ``MetricsData`` with both and
compares the decoded lines, so an exporter upgrade that changes the format fails here. The data
comes from the SDK itself (real instruments and a real reader) and from hypothesis (values,
attributes, empty and special fields the SDK rarely makes).
"""

from __future__ import annotations

import io
import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.json.file import FileMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar.exemplar_filter import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from observability import Histogram as LocalHistogram
from observability._histogram_export import HistogramSeries, data_point
from observability._metric_json import MetricLineExporter


def lines(exporter_type: type, data: MetricsData) -> list[object]:
    stream = io.StringIO()
    exporter = FileMetricExporter(stream=stream) if exporter_type is FileMetricExporter else exporter_type(stream)
    assert exporter.export(data) == MetricExportResult.SUCCESS
    return [json.loads(line) for line in io.StringIO(stream.getvalue(), newline=None)]


def assert_same(data: MetricsData) -> None:
    ours, theirs = lines(MetricLineExporter, data), lines(FileMetricExporter, data)
    assert ours == theirs


def collected(exemplars: bool) -> MetricsData:
    """One collection of every instrument kind, from the SDK."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource({"service.name": "g", "process.pid": 42, "x.ratio": 0.5}, "https://schema/1"),
        exemplar_filter=AlwaysOnExemplarFilter() if exemplars else AlwaysOffExemplarFilter(),
    )
    meter = provider.get_meter("tickbus", "1.0", schema_url="https://schema/2", attributes={"a": "b"})
    counter = meter.create_counter("c", unit="{message}", description="counted")
    counter.add(3, {"tickbus.actor": "model", "messaging.destination.name": "tick"})
    counter.add(2.5, {"tickbus.actor": "ünïcode"})
    meter.create_up_down_counter("u").add(-4)

    def observe(options: CallbackOptions) -> list[Observation]:
        return [Observation(7, {"k": "v"}), Observation(1.25, {"k": "w", "n": 3, "ok": True})]

    meter.create_observable_counter("oc", [observe])
    meter.create_observable_up_down_counter("oud", [observe])
    meter.create_observable_gauge("og", [observe], unit="s")
    histogram = meter.create_histogram("h", unit="s")
    for value in (0.001, 0.02, 3.0):
        histogram.record(value, {"tickbus.actor": "model"})
    meter.create_histogram("empty")  # never recorded: no metric
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def test_a_real_collection_without_exemplars_is_written_alike():
    assert_same(collected(exemplars=False))


def test_exemplars_are_left_to_the_library_and_written_alike():
    data = collected(exemplars=True)
    points = [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics for p in m.data.data_points]
    assert any(p.exemplars for p in points)  # the case is what it says
    assert_same(data)


def test_tickbus_histograms_are_written_alike():
    local = LocalHistogram()
    for value in (0, 900, 1_500, 2_000_000, 7 * 10**9, 10**12):
        local.record(value)
    points = [
        data_point(HistogramSeries(local, {"tickbus.actor": "a"}, 1), 2),
        data_point(HistogramSeries(LocalHistogram(), {}, 0), 0),  # empty: count 0, no times
    ]
    metric = Metric("tickbus.actor.latency", "", "s", Histogram(points, AggregationTemporality.CUMULATIVE))
    assert_same(wrap([metric]))


def wrap(metrics: list[Metric], resource: Resource | None = None, scope_url: str | None = None) -> MetricsData:
    scope = InstrumentationScope("tickbus", "0.1.0", scope_url)
    return MetricsData([ResourceMetrics(resource or Resource({}), [ScopeMetrics(scope, metrics, "")], "")])


def test_empty_exports_write_nothing_alike():
    assert_same(MetricsData([]))
    assert_same(wrap([]))
    assert_same(MetricsData([ResourceMetrics(Resource({}), [], "")]))
    assert lines(MetricLineExporter, MetricsData([])) == []


numbers = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
attribute_values = st.one_of(
    st.text(max_size=8),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=3).map(tuple),
)
attributes = st.dictionaries(st.text(max_size=6), attribute_values, max_size=4)
times = st.integers(0, 2**64 - 1)


@st.composite
def number_points(draw: st.DrawFn) -> NumberDataPoint:
    return NumberDataPoint(draw(attributes), draw(times), draw(times), draw(numbers))


@st.composite
def histogram_points(draw: st.DrawFn) -> HistogramDataPoint:
    bounds = sorted(draw(st.lists(st.floats(0, 1e9), max_size=5, unique=True)))
    counts = draw(st.lists(st.integers(0, 2**40), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    optional = st.none() | st.floats(allow_nan=True, allow_infinity=True)
    return HistogramDataPoint(
        draw(attributes),
        draw(times),
        draw(times),
        sum(counts),
        draw(st.floats(allow_nan=True, allow_infinity=True)),
        counts if bounds or draw(st.booleans()) else [],
        bounds,
        draw(optional),
        draw(optional),
    )


temporalities = st.sampled_from(list(AggregationTemporality))


@st.composite
def metrics(draw: st.DrawFn) -> Metric:
    kind = draw(st.sampled_from(["sum", "gauge", "histogram"]))
    if kind == "sum":
        data = Sum(draw(st.lists(number_points(), max_size=3)), draw(temporalities), draw(st.booleans()))
    elif kind == "gauge":
        data = Gauge(draw(st.lists(number_points(), max_size=3)))
    else:
        data = Histogram(draw(st.lists(histogram_points(), max_size=3)), draw(temporalities))
    text = st.text(max_size=6)
    return Metric(draw(text), draw(text), draw(text), data)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(metrics(), max_size=4),
    st.dictionaries(st.text(max_size=5), attribute_values, max_size=3),
    st.none() | st.just("https://opentelemetry.io/schemas/1.21.0"),
)
def test_any_points_are_written_alike(metric_list, resource_attributes, schema_url):
    assert_same(wrap(metric_list, Resource(resource_attributes, schema_url), schema_url))


def test_special_floats_are_strings_as_the_mapping_says():
    point = NumberDataPoint({}, 0, 1, math.inf)
    [line] = lines(MetricLineExporter, wrap([Metric("g", "", "", Gauge([point]))]))
    assert line["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0] == {
        "timeUnixNano": "1",
        "asDouble": "Infinity",
    }
