"""Metrics: one-call :meth:`Metrics.enable` / :meth:`Metrics.disable`, exporters chosen by environment.

``observability.metrics`` is the process's one :class:`Metrics`. Sources (actors, hubs, a broker)
register with ``add_actor`` / ``add_hub`` / ``add_broker`` whether or not metrics are enabled
(registering costs an append; nothing is read until a collection), and :meth:`Metrics.enable` starts
the exporters:

- OTLP JSON lines in ``<data dir>/metrics/<service>.jsonl`` (the embedded default: nothing else to
  run), unless an OTLP endpoint is configured;
- OTLP/HTTP JSON when ``$OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` or ``$OTEL_EXPORTER_OTLP_ENDPOINT`` is
  set (the exporter reads the other standard ``OTEL_EXPORTER_OTLP_*`` variables);
- a Prometheus scrape endpoint at ``http://127.0.0.1:<port>/metrics`` when a port is given
  (``prometheus_port``, else ``$TICKBUS_METRICS_PORT``; 0 or unset: off; host ``$TICKBUS_METRICS_HOST``).

The file rotates by size and its rotated copies are kept by count and age (:mod:`._rotation`:
``$TICKBUS_EXPORT_MAX_BYTES``, ``_KEEP``, ``_MAX_AGE_DAYS``). Push exporters run every
``interval`` seconds, else ``$OTEL_METRIC_EXPORT_INTERVAL`` ms, else 10 s,
and once more on :meth:`Metrics.disable`. The meter provider is private to this object (never the
global one), so enable/disable can repeat. ``OTEL_SDK_DISABLED=true`` turns :meth:`enable` into a no-op.
Names, units and attributes: :mod:`._metric_catalog`; histograms: :mod:`._histogram_export`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from loguru import logger

from ._errors import MetricsError
from ._log_sink import QueuedSink, QueuedStream
from ._metric_sources import ActorSource, BrokerSource, HubSource, Sources
from ._resource import data_dir, process_resource, tickbus_version
from ._rotation import OPEN_TIMEOUT, WRITE_FAILURES, RotatingFile, Rotation

if TYPE_CHECKING:  # the SDK and exporters load on enable(): importing tickbus stays fast
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
    from prometheus_client import CollectorRegistry

_DEFAULT_INTERVAL_S = 10.0
_SCOPE = "tickbus"
_MAX_WRITES = 16  # metrics file lines (one per export) waiting for the disk; more: dropped, counted


@dataclass(frozen=True)
class MetricsStatistics:
    """Where metrics go and what is registered (``None``: that exporter is off)."""

    enabled: bool
    actors: int
    hubs: int
    brokers: int
    file: str | None
    otlp_endpoint: str | None
    prometheus_url: str | None


@dataclass
class _Running:
    provider: MeterProvider
    push: list[MetricReader]
    server: Any  # prometheus_client's WSGI server (untyped), or None
    file: str | None
    otlp_endpoint: str | None
    prometheus_url: str | None
    stream: RotatingFile | None
    writer: QueuedSink | None  # the file's writer thread


class Metrics:
    """The process's metrics: registered sources, and the exporters while enabled."""

    def __init__(self) -> None:
        self.sources = Sources()
        self._running: _Running | None = None

    @property
    def enabled(self) -> bool:
        """True between :meth:`enable` and :meth:`disable`."""
        return self._running is not None

    # -- sources --------------------------------------------------------------------------------
    def add_actor(self, actor: ActorSource) -> None:
        """Export ``actor``'s counters and histograms (attribute ``tickbus.actor``)."""
        self.sources.add_actor(actor)

    def add_hub(self, hub: HubSource) -> None:
        """Export ``hub``'s counters: received, gaps, duplicates, drops... (attribute ``tickbus.hub``)."""
        self.sources.add_hub(hub)

    def add_broker(self, broker: BrokerSource) -> None:
        """Export ``broker``'s forwarded messages and bytes, subscribers, subscriptions."""
        self.sources.add_broker(broker)

    def remove(self, *sources: object) -> None:
        """Stop exporting ``sources`` (call :meth:`flush` first to export their final values)."""
        self.sources.remove(*sources)

    # -- lifecycle ------------------------------------------------------------------------------
    def enable(
        self,
        service: str = "tickbus",
        *,
        actors: Iterable[ActorSource] = (),
        hubs: Iterable[HubSource] = (),
        brokers: Iterable[BrokerSource] = (),
        prometheus_port: int | None = None,
        prometheus_host: str | None = None,
        otlp_file: str | Path | bool | None = None,
        interval: float | None = None,
        rotation: Rotation | None = None,
    ) -> Metrics:
        """Register ``actors``/``hubs``/``brokers`` and start exporting; returns ``self``.

        ``otlp_file``: ``None`` writes ``<data dir>/metrics/<service>.jsonl`` unless an OTLP endpoint
        is set, ``True`` always, ``False`` never, a path writes there. Enabling again restarts the
        exporters with the new settings. ``rotation`` bounds the file (default
        :meth:`Rotation.from_environment`). :class:`MetricsError` when the port or file is unusable.
        """
        self.disable()
        for actor in actors:
            self.add_actor(actor)
        for hub in hubs:
            self.add_hub(hub)
        for broker in brokers:
            self.add_broker(broker)
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            logger.info("metrics not exported: OTEL_SDK_DISABLED=true")
            return self
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricReader
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from prometheus_client import CollectorRegistry

        from ._histogram_export import HistogramInjector, PeriodicReader, PrometheusReader
        from ._metric_catalog import create_instruments, histograms

        port = prometheus_port if prometheus_port is not None else _env_port()
        millis = _interval_millis(interval)
        host = prometheus_host or os.environ.get("TICKBUS_METRICS_HOST") or "127.0.0.1"
        injector = HistogramInjector(
            lambda: histograms(self.sources), InstrumentationScope(_SCOPE, tickbus_version()), time.time_ns
        )
        server, prometheus_url, readers = None, None, list[MetricReader]()
        stream: RotatingFile | None = None
        writer: QueuedSink | None = None
        rotation = rotation if rotation is not None else Rotation.from_environment()
        try:
            if port:
                registry = CollectorRegistry()
                server = _serve(port, host, registry)
                prometheus_url = f"http://{host}:{port}/metrics"
                readers.append(PrometheusReader(injector, registry))
            push, file, endpoint, stream, writer = _push_exporters(service, otlp_file, rotation)
            push_readers: list[MetricReader] = [PeriodicReader(e, injector, millis) for e in push]
            readers.extend(push_readers)
            provider = MeterProvider(resource=process_resource(service), metric_readers=readers)
        except BaseException:
            for reader in readers:
                reader.shutdown()
            if server is not None:
                server.shutdown()
                server.server_close()
            if writer is not None:
                writer.close(0.0)
            if stream is not None:
                stream.close()
            raise
        create_instruments(provider.get_meter(_SCOPE, tickbus_version()), self.sources)
        self._running = _Running(
            provider, push_readers, server, file, endpoint, prometheus_url, stream, writer
        )
        logger.info(
            "metrics of {}: file {}, OTLP endpoint {}, Prometheus {}",
            service,
            file or "off",
            endpoint or "off",
            prometheus_url or "off",
        )
        return self

    def disable(self, timeout: float = 5.0) -> None:
        """Export once more (push exporters), then stop every exporter. Registrations stay."""
        running, self._running = self._running, None
        if running is None:
            return
        deadline = time.monotonic() + timeout
        running.provider.shutdown(timeout_millis=timeout * 1000)
        if running.writer is not None:  # the last export written (a stalled disk: until the timeout)
            running.writer.close(max(0.0, deadline - time.monotonic()))
        if running.stream is not None:  # the exporter leaves a stream it was given open
            running.stream.close()
        if running.server is not None:
            running.server.shutdown()
            running.server.server_close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Collect and push now (file, OTLP); False when disabled or an exporter timed out."""
        running = self._running
        if running is None:
            return False
        deadline = time.monotonic() + timeout
        flushed = all(reader.force_flush(timeout_millis=timeout * 1000) for reader in running.push)
        writer = running.writer
        return flushed and (writer is None or writer.flush(max(0.0, deadline - time.monotonic())))

    def statistics(self) -> MetricsStatistics:
        """What is registered and where metrics go."""
        actors, hubs, brokers = self.sources.counts()
        running = self._running
        return MetricsStatistics(
            enabled=running is not None,
            actors=actors,
            hubs=hubs,
            brokers=brokers,
            file=running.file if running else None,
            otlp_endpoint=running.otlp_endpoint if running else None,
            prometheus_url=running.prometheus_url if running else None,
        )


def _env_port() -> int:
    raw = os.environ.get("TICKBUS_METRICS_PORT", "").strip()
    if not raw:
        return 0
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise MetricsError(
            f"TICKBUS_METRICS_PORT={raw!r} is not a TCP port; "
            "set 1-65535 for a Prometheus endpoint, or 0 for none"
        )
    return port


def _serve(port: int, host: str, registry: CollectorRegistry) -> Any:
    from prometheus_client import start_http_server

    if not 0 < port <= 65535:
        raise MetricsError(f"metrics port {port} is not a TCP port; use 1-65535, or 0 for no endpoint")
    try:
        server, _thread = start_http_server(port, host, registry)
    except OSError as exc:
        raise MetricsError(
            f"metrics endpoint {host}:{port} cannot listen ({exc.strerror or exc}); pick a free port with "
            "--metrics-port or TICKBUS_METRICS_PORT, or 0 for no endpoint"
        ) from exc
    return server


def _push_exporters(
    service: str, otlp_file: str | Path | bool | None, rotation: Rotation
) -> tuple[list[MetricExporter], str | None, str | None, RotatingFile | None, QueuedSink | None]:
    exporters: list[MetricExporter] = []
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or None
    if endpoint is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].removesuffix("/") + "/v1/metrics"
    if endpoint is not None:
        from ._otlp_http import MetricRequestExporter

        exporters.append(MetricRequestExporter())  # the library's, encoding as the metrics file does
    file: Path | None = None
    if otlp_file is True or (otlp_file is None and endpoint is None):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", service).strip(".") or "tickbus"
        file = data_dir(create=False) / "metrics" / f"{safe}.jsonl"
    elif isinstance(otlp_file, str | Path):
        file = Path(otlp_file)
    stream, writer = None, None
    if file is not None:
        from ._metric_json import MetricLineExporter

        try:
            stream = RotatingFile(file, rotation, signal="metrics", open_timeout=OPEN_TIMEOUT)
            # written by a thread of its own: a stalled disk must not hold the SDK's reader (its
            # export lock, which flush and shutdown wait for) for as long as the disk stalls
            writer = QueuedSink(stream.as_io(), str, max_lines=_MAX_WRITES, name="tickbus-metrics-writer")
            exporters.append(MetricLineExporter(cast("IO[str]", QueuedStream(writer, _dropped))))
        except OSError as exc:
            raise MetricsError(
                f"metrics file {file} cannot be written ({exc.strerror or exc}); set TICKBUS_DATA_DIR to a "
                "writable directory"
            ) from exc
    return exporters, str(file) if file is not None else None, endpoint, stream, writer


def _dropped() -> None:
    """A metrics export the stalled disk had no room for: a failed write of the metrics file."""
    WRITE_FAILURES["metrics"] = WRITE_FAILURES.get("metrics", 0) + 1


def _interval_millis(interval: float | None) -> float | None:
    if interval is not None:
        if interval <= 0:
            raise MetricsError(f"metrics export interval must be positive, got {interval} s")
        return interval * 1000
    if os.environ.get("OTEL_METRIC_EXPORT_INTERVAL"):
        return None  # the SDK reads it (milliseconds)
    return _DEFAULT_INTERVAL_S * 1000


metrics = Metrics()
"""The process's metrics: ``observability.metrics.enable(service=..., prometheus_port=...)``."""
