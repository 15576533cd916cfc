"""OTLP/HTTP JSON exporters whose request bodies tickbus encodes itself, as the trace and metrics files.

Problem: with ``$OTEL_EXPORTER_OTLP_ENDPOINT`` set, spans and metrics go to a collector through
``opentelemetry-exporter-otlp-json-http``, whose encoder builds a tree of generated message objects
per span or data point, converts it to dicts, then dumps them. It runs in the SDK's batch processor
and metric reader threads and holds the GIL meanwhile, so the event loop's handlers wait for it:
measured by ``bench._tracing_cost`` (2026-12-08), a sampled message cost +39.9 us at its origin and
+60.6 us a hop with the library's encoder in the batch processor, against +7.9 / +12.1 us for the
trace file, whose encoder (:mod:`._span_json`) writes the same OTLP JSON ~6x cheaper.

Approach: the body of an export request is the same ``ExportTraceServiceRequest`` /
``ExportMetricsServiceRequest`` a file line holds, so these exporters are the library's, with
``export`` encoding by :func:`._span_json.encode_line` / :func:`._metric_json.encode_metrics_line`
and handing the bytes to the library's HTTP client (its endpoint, headers, compression, retries and
timeouts, all from the same ``OTEL_EXPORTER_OTLP_*`` variables). What tickbus's metrics encoder does
not write (exemplars, exponential histograms, summaries) and a metrics exporter told to split its
exports are left to the library's own ``export``.

``tests/observability/test_otlp_http.py`` sends both encoders' requests to a collector on loopback
and compares what it received, so an upgrade of the exporters that changes the format or the
client's API shows up there. Imported only where an OTLP endpoint is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.json.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from ._metric_json import _UnsupportedError, encode_metrics_line
from ._otlp_json import Encoded
from ._span_json import encode_line

_logger = logging.getLogger(__name__)  # where the library's exporters report failures too


class SpanRequestExporter(OTLPSpanExporter):
    """The library's OTLP/HTTP JSON span exporter, each request's body encoded by :func:`encode_line`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache = Encoded()  # the resource's and scope's JSON, once (exports come from one thread)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return super().export(spans)  # the library's warning and result
        try:
            text = encode_line(spans, self._cache)
        except Exception as error:  # as the library's: a failed export, never an exception
            _logger.error("Failed to encode spans: %s", error)
            return SpanExportResult.FAILURE
        if text is None:
            return SpanExportResult.SUCCESS
        result = self._client.export(text.encode())
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


class MetricRequestExporter(OTLPMetricExporter):
    """The library's OTLP/HTTP JSON metric exporter, each request's body encoded by
    :func:`encode_metrics_line` where it writes every point; the library's ``export`` otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache = Encoded()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self._shutdown or self._max_export_batch_size is not None:
            return super().export(metrics_data, timeout_millis, **kwargs)
        try:
            text = encode_metrics_line(metrics_data, self._cache)
        except _UnsupportedError:
            return super().export(metrics_data, timeout_millis, **kwargs)
        except Exception as error:
            _logger.error("Failed to encode metrics: %s", error)
            return MetricExportResult.FAILURE
        if text is None:  # the library sends a request with no resource metrics: so does this
            text = "{}"
        result = self._client.export(text.encode())
        return MetricExportResult.SUCCESS if result.success else MetricExportResult.FAILURE
