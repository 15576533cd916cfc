"""Metrics to OTLP JSON lines, as ``opentelemetry-exporter-otlp-json-file`` writes them, ~4x cheaper.

Problem: a metrics export runs in the SDK's reader thread and holds the GIL while it runs, so the
event loop's handlers wait for it (README, "Metrics"). Measured on the test VM (2026-12-08), about
half of an export was the library's encoding: it builds a tree of generated message objects per
data point, converts that tree to dicts, then ``json.dumps`` them; ~3 ms of a ~7 ms export for a
group of 30 actors.

Approach: build the same JSON directly from the SDK's ``MetricsData`` for what tickbus exports (sums,
gauges and explicit-bucket histograms without exemplars), with attribute pairs, resources and
scopes encoded by :mod:`._span_json`'s helpers (each once). Anything else (an exemplar, an
exponential histogram, a summary) is encoded by the library, so the line is the library's either way.

``tests/observability/test_metric_json.py`` checks it against the library's encoder on real
collections and on every kind of point, so an upgrade of the exporters that changes the format
shows up there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

from opentelemetry.exporter.otlp.json.file import FileMetricExporter
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    MetricExportResult,
    MetricsData,
    Sum,
)

from ._otlp_json import Encoded, attributes_json, json_encoder, schema_member
from ._ratelimit import RateLimitedLog


class _UnsupportedError(Exception):
    """A point this encoder does not write: the library encodes the whole export."""


def _float(value: float) -> str:
    """A double as the OTLP JSON mapping writes it (NaN and infinities as strings)."""
    if type(value) is float:
        if value - value == 0.0:  # finite (an infinity or NaN gives NaN)
            return repr(value)  # what json.dumps writes
        if value != value:  # noqa: PLR0124 -- NaN
            return '"NaN"'
        return '"Infinity"' if value > 0 else '"-Infinity"'
    return json_encoder.encode(value).decode()  # an int where a double may be: as the library, unchanged


_BOUNDS: dict[tuple[float, ...], str] = {}  # explicit bounds repeat in every point: encoded once


def _bounds(bounds: Sequence[float]) -> str:
    key = tuple(bounds)
    text = _BOUNDS.get(key)
    if text is None:
        if len(_BOUNDS) >= 64:
            _BOUNDS.clear()
        text = _BOUNDS[key] = '"explicitBounds":[' + ",".join(_float(b) for b in key) + "]"
    return text


def _head(point: Any, start: bool) -> list[str]:
    """The members every point begins with: attributes, start time (``start``: a sum's or a
    histogram's, not a gauge's) and time; a point with exemplars is the library's to write."""
    if point.exemplars:
        raise _UnsupportedError
    parts = []
    if point.attributes:
        parts.append('"attributes":' + attributes_json(point.attributes))
    if start and point.start_time_unix_nano:
        parts.append(f'"startTimeUnixNano":"{point.start_time_unix_nano}"')
    if point.time_unix_nano:
        parts.append(f'"timeUnixNano":"{point.time_unix_nano}"')
    return parts


def _number(point: Any, start: bool) -> str:
    parts = _head(point, start)
    value = point.value
    if type(value) is int:
        parts.append(f'"asInt":"{value}"')
    elif type(value) is float:
        parts.append('"asDouble":' + _float(value))
    else:  # a bool or an int subclass: as the library does, whatever that is
        raise _UnsupportedError
    return "{" + ",".join(parts) + "}"


def _histogram(point: Any) -> str:
    parts = _head(point, True)
    if point.count:
        parts.append(f'"count":"{point.count}"')
    if point.sum is not None:
        parts.append('"sum":' + _float(point.sum))
    if point.bucket_counts:
        parts.append('"bucketCounts":[' + ",".join(f'"{n}"' for n in point.bucket_counts) + "]")
    if point.explicit_bounds:
        parts.append(_bounds(point.explicit_bounds))
    if point.min is not None:
        parts.append('"min":' + _float(point.min))
    if point.max is not None:
        parts.append('"max":' + _float(point.max))
    return "{" + ",".join(parts) + "}"


def _points(points: Sequence[Any], encode: Any, *args: Any) -> str:
    return '"dataPoints":[' + ",".join(encode(p, *args) for p in points) + "]" if points else ""


def _metric(metric: Any) -> str:
    parts = []
    if metric.name:
        parts.append('"name":' + json_encoder.encode(metric.name).decode())
    if metric.description:
        parts.append('"description":' + json_encoder.encode(metric.description).decode())
    if metric.unit:
        parts.append('"unit":' + json_encoder.encode(metric.unit).decode())
    data = metric.data
    kind = type(data)
    if kind is Sum:
        body = [_points(data.data_points, _number, True)]
        if data.aggregation_temporality:
            body.append(f'"aggregationTemporality":{int(data.aggregation_temporality)}')
        if data.is_monotonic:
            body.append('"isMonotonic":true')
        parts.append('"sum":{' + ",".join(b for b in body if b) + "}")
    elif kind is Gauge:
        parts.append('"gauge":{' + _points(data.data_points, _number, False) + "}")
    elif kind is Histogram:
        body = [_points(data.data_points, _histogram)]
        if data.aggregation_temporality:
            body.append(f'"aggregationTemporality":{int(data.aggregation_temporality)}')
        parts.append('"histogram":{' + ",".join(b for b in body if b) + "}")
    else:
        raise _UnsupportedError
    return "{" + ",".join(parts) + "}"


def encode_metrics_line(data: MetricsData, cache: Encoded | None = None) -> str | None:
    """The OTLP JSON ``ExportMetricsServiceRequest`` of ``data`` as one line's text, no newline;
    ``None`` when it has no resource metrics (the library writes no line then). Raises
    :class:`_UnsupportedError` for what the library must encode."""
    if not data.resource_metrics:
        return None
    cache = cache if cache is not None else Encoded()
    resources = []
    for rm in data.resource_metrics:
        scopes = []
        for sm in rm.scope_metrics:
            body = '"scope":' + cache.scope(sm.scope)
            if sm.metrics:
                body += ',"metrics":[' + ",".join(_metric(m) for m in sm.metrics) + "]"
            scopes.append("{" + body + schema_member(sm.scope) + "}")
        body = '"resource":' + cache.resource(rm.resource)
        if scopes:
            body += ',"scopeMetrics":[' + ",".join(scopes) + "]"
        resources.append("{" + body + schema_member(rm.resource) + "}")
    return '{"resourceMetrics":[' + ",".join(resources) + "]}"


class MetricLineExporter(FileMetricExporter):
    """``FileMetricExporter`` on a stream (same temporality and aggregation preferences, same lines),
    encoding with :func:`encode_metrics_line`, and with the library's encoder for what that does not
    write."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream=stream)
        self._stream = stream
        self._cache = Encoded()
        self._closed = False
        self._log = RateLimitedLog()
        self.failures = 0

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self._closed:
            return MetricExportResult.FAILURE
        try:
            text = encode_metrics_line(metrics_data, self._cache)
        except _UnsupportedError:
            return super().export(metrics_data, timeout_millis, **kwargs)
        try:
            if self._stream.closed:
                return MetricExportResult.FAILURE
            if text is not None:
                self._stream.write(text + "\n")
            self._stream.flush()
        except Exception as exc:  # as the library's exporter: a failed export, never an exception
            self.failures += 1
            self._log.log(
                "ERROR", "metrics-write", "writing metrics failed ({} so far): {!r}", self.failures, exc
            )
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._closed = True
        super().shutdown(timeout_millis, **kwargs)
