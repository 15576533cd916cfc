"""Local :class:`Histogram`s exported as real OpenTelemetry histograms, injected at collection time.

Problem: OpenTelemetry has no observable (asynchronous) histogram, and recording every value into an
SDK ``Histogram`` instrument costs microseconds per message, which the bus cannot pay. Handler time,
end-to-end latency and loop lag are already counted in :class:`~observability.Histogram` (plain ints).

Approach: at each collection, every reader adds ready-made cumulative ``HistogramDataPoint``s with
explicit bounds, built from snapshots of those histograms, to the ``MetricsData`` the SDK collected,
before its exporter (or the Prometheus collector) sees it. The hook is
``MetricReader._receive_metrics``: the SDK's ``MetricReader.collect()`` (``@final``) hands every batch
to it, it is the one abstract method each reader implements, and the SDK documents it as the method
subclasses override (``.. automethod:: _receive_metrics`` in ``MetricReader``'s docstring). Two small
subclasses, :class:`PeriodicReader` (OTLP file, OTLP/HTTP) and :class:`PrometheusReader`, override it
to call :class:`HistogramInjector` and then the SDK's own implementation; the rest of the SDK stays
untouched. Alternatives, rejected after reading the pinned SDK (1.45): wrapping the ``MetricExporter``
covers push exporters only (the Prometheus reader has none); wrapping the callback installed by
``_set_collect_callback`` (``@final``, "internal to the SDK") or adding an aggregation means depending
on ``opentelemetry.sdk.metrics._internal``; a separate prometheus_client collector would bypass
OpenTelemetry, so the OTLP and Prometheus outputs could disagree.

Bounds: a fixed 1-2-5 series from 1 µs to 10 s (:data:`DEFAULT_BOUNDS`, 22 bounds, 23 buckets),
re-binned from the histogram's 496 log-linear buckets. A fine bucket is counted under the first bound
at or above its upper edge, so a value up to 12.5 % below a bound may land in the bucket above it:
never optimistic, like :meth:`Histogram.percentile`. ``count`` is the sum of the buckets (it always
equals the +Inf bucket); ``min`` is the lower edge of the lowest non-empty bucket.

Limits: points are always CUMULATIVE since the source was registered, also for a reader that prefers
DELTA (they are labelled correctly). Snapshots are read from the exporter's thread while the loop
records, without a lock: ``sum`` may include a value the buckets do not show yet.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from loguru import logger
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricsData,
    PeriodicExportingMetricReader,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.export import Histogram as OtelHistogram
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry

from ._histogram import Histogram

_DECADES = range(-6, 1)  # 1 µs .. 1 s
DEFAULT_BOUNDS: tuple[float, ...] = (*(float(f"{m}e{e}") for e in _DECADES for m in (1, 2, 5)), 10.0)
"""Explicit bucket bounds in seconds: 1 µs, 2 µs, 5 µs, 10 µs ... 5 s, 10 s."""


@dataclass(frozen=True)
class HistogramSeries:
    """One data point to export: a local histogram of nanoseconds, its attributes, when it started."""

    histogram: Histogram
    attributes: Mapping[str, str]
    start_ns: int


@dataclass(frozen=True)
class HistogramMetric:
    """One OpenTelemetry histogram metric (name, UCUM unit, description) and its series."""

    name: str
    unit: str
    description: str
    series: Sequence[HistogramSeries]


HistogramFeed = Callable[[], Sequence[HistogramMetric]]
"""What a reader calls at each collection for the histograms to add."""


def data_point(
    series: HistogramSeries, now_ns: int, bounds: Sequence[float] = DEFAULT_BOUNDS, scale: float = 1e-9
) -> HistogramDataPoint:
    """A cumulative point for ``series``: nanoseconds times ``scale`` (seconds), re-binned to ``bounds``."""
    histogram = series.histogram
    counts = histogram.rebinned(_limits(tuple(bounds), scale))
    count = sum(counts)
    return HistogramDataPoint(
        attributes=dict(series.attributes),
        start_time_unix_nano=series.start_ns,
        time_unix_nano=now_ns,
        count=count,
        sum=histogram.total * scale if count else 0.0,
        bucket_counts=counts,
        explicit_bounds=list(bounds),
        min=histogram.min_bound() * scale if count else 0.0,
        max=histogram.max * scale if count else 0.0,
    )


@functools.lru_cache(maxsize=8)
def _limits(bounds: tuple[float, ...], scale: float) -> tuple[float, ...]:
    """``bounds`` in the histogram's unit (ns), computed once per bounds."""
    return tuple(bound / scale for bound in bounds)


class HistogramInjector:
    """Adds the histograms of a feed to collected ``MetricsData`` under one instrumentation scope."""

    def __init__(self, feed: HistogramFeed, scope: InstrumentationScope, clock: Callable[[], int]) -> None:
        self.feed = feed
        self.scope = scope
        self._clock = clock

    def metrics(self) -> list[Metric]:
        """The feed's histograms as OpenTelemetry metrics, now."""
        now = self._clock()
        return [
            Metric(
                name=m.name,
                description=m.description,
                unit=m.unit,
                data=OtelHistogram(
                    data_points=[data_point(s, now) for s in m.series],
                    aggregation_temporality=AggregationTemporality.CUMULATIVE,
                ),
            )
            for m in self.feed()
            if m.series
        ]

    def __call__(self, data: MetricsData) -> MetricsData:
        """``data`` plus the histograms, added to the first resource (one provider has one)."""
        try:
            extra = self.metrics()
        except Exception:  # a broken source must not cost the other metrics their export
            logger.exception("tickbus histograms skipped in this metrics collection")
            return data
        if not extra or not data.resource_metrics:
            return data
        first, *others = data.resource_metrics
        scopes = list(first.scope_metrics)
        for i, scope_metrics in enumerate(scopes):
            if scope_metrics.scope == self.scope:
                scopes[i] = replace(scope_metrics, metrics=[*scope_metrics.metrics, *extra])
                break
        else:
            scopes.append(
                ScopeMetrics(scope=self.scope, metrics=extra, schema_url=self.scope.schema_url or "")
            )
        return MetricsData(resource_metrics=[replace(first, scope_metrics=scopes), *others])


class PeriodicReader(PeriodicExportingMetricReader):
    """The SDK's periodic reader, with the injector's histograms in every export."""

    def __init__(
        self, exporter: MetricExporter, injector: HistogramInjector, export_interval_millis: float | None
    ) -> None:
        self._injector = injector
        super().__init__(exporter, export_interval_millis=export_interval_millis)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        super()._receive_metrics(self._injector(metrics_data), timeout_millis, **kwargs)


class PrometheusReader(PrometheusMetricReader):
    """The Prometheus exporter's reader (collects on each scrape), with the injector's histograms."""

    def __init__(self, injector: HistogramInjector, registry: CollectorRegistry) -> None:
        self._injector = injector
        super().__init__(registry=registry)

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        super()._receive_metrics(self._injector(metrics_data), timeout_millis, **kwargs)
