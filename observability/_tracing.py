"""Message tracing: OpenTelemetry spans for sampled messages only, W3C trace context in the envelope.

``observability.tracing`` is the process's one :class:`Tracing`; :func:`enable_tracing` /
:func:`disable_tracing` turn it on and off (``tickbus run`` does both). Actors call two hooks, and
only for a sampled origin or a message that carries a trace context, so with tracing off nothing
here runs per message at all:

- :meth:`Tracing.origin` and :meth:`Tracing.publish` from ``Actor.publish``. Outside a handler (a
  timer, a ``run`` loop) the publish is an *origin*: each actor counts its publishes toward the
  next sampled one, a gap :meth:`Tracing.origin_gap` draws at :attr:`Tracing.origin_ratio` (see
  :mod:`._sampling`; every actor registers with :meth:`Tracing.follow`, and draws afresh when
  tracing is enabled or disabled), and calls ``origin`` for the chosen ones, which sends them in a
  producer span (:meth:`Tracing.send`) while the process's budget of
  traces started a second allows (``max_origin_spans_per_second``; the others go untraced,
  counted). Inside a handler it follows the message being handled: untraced, the hub publishes as
  it would without tracing; traced, ``publish`` decides. Sampled: a PRODUCER span ``publish <first key
  segment>`` whose context travels in the header as ``[traceparent, tracestate]``, a child of the
  consumer span when inside a handler.
- :meth:`Tracing.handler` from ``Actor._consume`` for a message that arrived with a trace context:
  the handler runs inside a CONSUMER span ``process <first key segment>``, a child of the producer
  span and linked to it, and current (OpenTelemetry's context), so log lines and publishes made by
  the handler belong to the trace.

Attributes (OpenTelemetry messaging semantic conventions): ``messaging.system`` = ``tickbus``,
``messaging.operation.type`` = ``send`` / ``process``, ``messaging.operation.name`` = ``publish`` /
``process``, ``messaging.destination.name`` = the key's segments joined with ``/``
(``tick/AAPL``), ``messaging.message.id`` = ``<publisher id>:<sequence>`` (the sequence counts per
key, so the id is unique per destination), ``messaging.consumer.group.name`` = the actor's name;
plus ``tickbus.actor`` and, on consumer spans, ``tickbus.handler``.

Spans go through a BatchSpanProcessor to OTLP/HTTP JSON when ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
or ``$OTEL_EXPORTER_OTLP_ENDPOINT`` is set, else to OTLP JSON lines in
``<data dir>/traces/<service>-<pid>.jsonl`` (read by ``tickbus trace``), rotated by size and kept by
count and age with the rotated files of the same service's earlier processes (:mod:`._rotation`).
``OTEL_SDK_DISABLED=true``
or ``OTEL_TRACES_EXPORTER=none`` turn :meth:`Tracing.enable` into a no-op. The tracer provider is
private to this object, so enable/disable can repeat; :attr:`Tracing.tracer` makes your own spans.
Only actors are traced: a plain ``Hub.publish`` or ``Publisher`` carries no trace context.

Limits: a process with tracing off passes no trace context on (its publishes start none either).
An actor's timer or ``run`` publishing while one of its *async* handlers awaits is taken to publish
from that handler when the message being handled is unsampled, so it is not sampled either: telling
the tasks apart costs ``asyncio.current_task()``, ~200 ns on Python 3.11, on every publish. (With a
sampled message being handled, the current span tells them apart, and the timer's publish is an
origin as it should be.)
"""

from __future__ import annotations

import functools
import math
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from loguru import logger

from ._errors import TracingError
from ._log_sink import QueuedSink
from ._message_hooks import MessageHooks, _Made
from ._ratelimit import TokenBucket
from ._resource import data_dir, process_resource, tickbus_version
from ._rotation import OPEN_TIMEOUT, ROTATED, RotatingFile, Rotation, pid_is_live
from ._sampling import SYSTEM, SamplingPolicy, sampling_policy, sdk_sampler
from ._span_export import LoopSpanProcessor
from ._trace_context import OriginSampler

DEFAULT_MAX_FORCED_SPANS = 100.0
"""Consumer spans a second that received sampled trace contexts may make a process create."""
DEFAULT_MAX_ORIGIN_SPANS = 100.0
"""Traces a second a process starts at most: origins the sampler chose past it go untraced."""
_MAX_WRITES = 64  # trace file lines (exports of up to 64 spans) waiting for the disk; more: dropped
_CLOSE_WAIT_S = 5.0  # at disable, the longest wait for a stalled disk to take the queued lines


if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from ._span_json import SpanLineExporter


@dataclass(frozen=True)
class TracingStatistics:
    """Where spans go and how many were made (``None``: that exporter is off)."""

    enabled: bool
    sampler: str | None
    ratio: float
    producer_spans: int
    consumer_spans: int
    invalid_contexts: int
    file: str | None
    otlp_endpoint: str | None
    forced_ignored: int = 0
    """Received sampled contexts not honoured: over ``max_forced_spans_per_second``."""
    max_forced_spans_per_second: float = DEFAULT_MAX_FORCED_SPANS
    origins_over_budget: int = 0
    """Origins the sampler chose that went untraced: over ``max_origin_spans_per_second``."""
    max_origin_spans_per_second: float = DEFAULT_MAX_ORIGIN_SPANS
    spans_dropped: int = 0
    """Finished spans dropped before export: the export queue was full (a file export that fell behind)."""


class Tracing(MessageHooks):
    """Tracing of actor messages; use the module-level ``observability.tracing``. Its per-message
    hooks (``publish``, ``origin``, ``handler``, ``send``) are :class:`._message_hooks.MessageHooks`."""

    NEVER: ClassVar[int] = 1 << 62
    """:meth:`origin_gap` while no origin is sampled: more publishes than an actor makes."""

    def __init__(self) -> None:
        self.enabled = False  # read by the actor hooks before anything else
        # the share of origin publishes (outside any handler) to trace, 0 while disabled: actors
        # count their publishes against the number origin_gap() gave them and call origin() when
        # it is reached, so an untraced origin costs one comparison and no call (see Actor.publish)
        self.origin_ratio = 0.0
        self._log_keep = -1.0  # log(1 - origin_ratio) while 0 < origin_ratio < 1, for origin_gap
        self._followers: weakref.WeakSet[OriginSampler] = weakref.WeakSet()
        self._followers_lock = threading.Lock()
        self.tracer: Tracer | None = None
        self._provider: TracerProvider | None = None
        self._processor: Any = None  # LoopSpanProcessor counts what it drops; the SDK's batch one does not
        self._dropped = 0  # spans_dropped of the processors and file exporters of earlier enables
        self._writer: QueuedSink | None = None  # a trace file's writer thread
        self._line_exporter: SpanLineExporter | None = None
        self._made: _Made | None = None
        self._policy: SamplingPolicy | None = None
        self._ratio = 0.0
        self._random = random.random
        self._file: str | None = None
        self._stream: RotatingFile | None = None
        self._endpoint: str | None = None
        self._produced = self._consumed = self._invalid = self._ignored = self._over_budget = 0
        self._max_forced = DEFAULT_MAX_FORCED_SPANS
        self._forced = TokenBucket(self._max_forced, max(1.0, self._max_forced))
        self._max_origins = DEFAULT_MAX_ORIGIN_SPANS
        self._origins = TokenBucket(self._max_origins, max(1.0, self._max_origins))

    # -- switching ------------------------------------------------------------------------------
    def enable(
        self,
        service: str = "tickbus",
        *,
        actors: Sequence[str] = (),
        sampler: str | None = None,
        ratio: float | None = None,
        exporter: SpanExporter | None = None,
        max_forced_spans_per_second: float | None = None,
        rotation: Rotation | None = None,
        version: str | None = None,
        max_origin_spans_per_second: float | None = None,
    ) -> None:
        """Start tracing this process as ``service`` (``$OTEL_SERVICE_NAME`` wins).

        ``version`` is the application's version, the resource's ``service.version`` (default
        tickbus's).

        ``sampler`` / ``ratio`` default to ``$OTEL_TRACES_SAMPLER`` / ``_ARG``, else
        ``parentbased_traceidratio`` at 0.01. ``exporter`` replaces the exporter the environment
        would choose. ``max_forced_spans_per_second`` (default ``$TICKBUS_MAX_FORCED_SPANS``, else
        100) bounds the consumer spans that received sampled contexts make this process create;
        the rest run untraced, counted in ``forced_ignored``. ``max_origin_spans_per_second``
        (default ``$TICKBUS_MAX_ORIGIN_SPANS``, else 100) bounds the traces this process starts:
        past it an origin the sampler chose is sent untraced, counted in ``origins_over_budget``,
        so that tracing costs at most that many sampled sends a second however fast the process
        publishes (a market open at ten times the usual rate) and downstream processes, which
        honour 100 received contexts a second by default, see whole traces. ``rotation`` bounds
        the trace files (default :meth:`Rotation.from_environment`). Enabling again first disables
        (and flushes) the running setup.
        """
        if self.enabled:
            self.disable()
        self._forced, self._max_forced = _bucket(
            max_forced_spans_per_second,
            "TICKBUS_MAX_FORCED_SPANS",
            DEFAULT_MAX_FORCED_SPANS,
            "max_forced_spans_per_second",
        )
        self._origins, self._max_origins = _bucket(
            max_origin_spans_per_second,
            "TICKBUS_MAX_ORIGIN_SPANS",
            DEFAULT_MAX_ORIGIN_SPANS,
            "max_origin_spans_per_second",
        )
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return
        kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
        if exporter is None and kind == "none":
            return
        if exporter is None and kind not in ("otlp", "console"):
            raise TracingError(f"OTEL_TRACES_EXPORTER={kind!r} is not supported; use otlp, console or none")
        policy = sampling_policy(sampler, ratio)
        rotation = rotation if rotation is not None else Rotation.from_environment()
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._file = self._endpoint = None
        self._stream = None
        if exporter is None:
            exporter = self._exporter(service, kind, rotation)
        provider = TracerProvider(
            resource=process_resource(service, actors, version), sampler=sdk_sampler(policy)
        )
        # a local file: encoded on the loop, a slice at a time, and written by a thread of its own
        # (a stalled disk blocks that thread only); a network endpoint may block: its own thread
        # (see observability._span_export)
        processor: SpanProcessor = (
            LoopSpanProcessor(exporter) if self._file is not None else BatchSpanProcessor(exporter)
        )
        provider.add_span_processor(processor)
        self._processor = processor
        self._provider, self._policy, self._ratio = provider, policy, policy.ratio
        self.tracer = provider.get_tracer("tickbus", tickbus_version())
        from opentelemetry import context as otel_context
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import (
            SpanContext,
            SpanKind,
            TraceFlags,
            get_current_span,
            set_span_in_context,
        )

        from ._consumer_span import ConsumerSpan, remote_parent
        from ._producer_span import Producer

        scope = InstrumentationScope("tickbus", tickbus_version())  # the tracer's
        # A finished span is handed over as a record, its first item the function that makes the
        # span from it: the LoopSpanProcessor makes it at the drain, with its neighbours; another
        # processor (an OTLP endpoint's batch processor, a test's exporter) gets the span at once
        # (on_end_sampled where it has one: every span made here is sampled).
        record = (
            processor.on_end_record
            if isinstance(processor, LoopSpanProcessor)
            else _finishing(getattr(processor, "on_end_sampled", processor.on_end))
        )
        self._made = _Made(
            functools.partial(ReadableSpan, resource=provider.resource, instrumentation_scope=scope),
            record,
            Producer(provider.resource, scope, SYSTEM),
            SpanContext,
            TraceFlags(TraceFlags.SAMPLED),
            SpanKind.PRODUCER,
            get_current_span,
            remote_parent,
            ConsumerSpan,
            set_span_in_context,
            otel_context.attach,
            otel_context.detach,
        )
        self._produced = self._consumed = self._invalid = self._ignored = self._over_budget = 0
        self.enabled = True
        self._set_origin_ratio(policy.ratio)
        logger.info(
            "tracing {} with {} (origin ratio {}, at most {:g} traces started a second) to {}",
            service,
            policy.name,
            policy.ratio,
            self._max_origins,
            self._endpoint or self._file or type(exporter).__name__,
        )

    def _exporter(self, service: str, kind: str, rotation: Rotation) -> SpanExporter:
        if kind == "console":
            import sys

            from opentelemetry.exporter.otlp.json.file import FileSpanExporter

            return FileSpanExporter(stream=sys.stderr)
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
        if endpoint is None and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].removesuffix("/") + "/v1/traces"
        if endpoint is not None:
            from ._otlp_http import SpanRequestExporter

            self._endpoint = endpoint
            return SpanRequestExporter()  # the library's: it reads the OTEL_EXPORTER_OTLP_* variables itself
        from ._span_json import SpanLineExporter

        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.environ.get("OTEL_SERVICE_NAME") or service).strip(".")
        safe = safe or "tickbus"
        path = data_dir(create=False) / "traces" / f"{safe}-{os.getpid()}.jsonl"
        try:
            # retention spans every process of the service: each restart starts a file of its own
            scope = re.escape(safe) + rf"-\d+(?:{ROTATED})?\.jsonl"
            self._stream = RotatingFile(
                path, rotation, scope=scope, is_live=pid_is_live, signal="traces", open_timeout=OPEN_TIMEOUT
            )
            # encoded on the loop a slice at a time (see observability._span_export), written by a
            # thread of its own: a stalled disk must not stop the loop
            self._writer = QueuedSink(
                self._stream.as_io(), str, max_lines=_MAX_WRITES, name="tickbus-trace-writer"
            )
            file_exporter = SpanLineExporter(self._stream.as_io(), self._writer)  # json-file's lines, cheaper
        except OSError as exc:
            raise TracingError(
                f"trace file {path} cannot be written ({exc.strerror or exc}); set TICKBUS_DATA_DIR to a "
                "writable directory"
            ) from exc
        self._file = str(path)
        self._line_exporter = file_exporter
        return file_exporter

    def disable(self) -> None:
        """Stop tracing: export the spans still queued, then shut the exporter down."""
        if not self.enabled:
            return
        self.enabled = False
        self._set_origin_ratio(0.0)
        provider, self._provider, self.tracer = self._provider, None, None
        processor, self._processor = self._processor, None
        self._dropped += getattr(processor, "dropped", 0)
        self._made = None
        if provider is not None:
            provider.shutdown()
        writer, self._writer = self._writer, None
        if writer is not None:  # what the shutdown exported, written (a stalled disk: 5 s at most)
            writer.close(_CLOSE_WAIT_S)
        self._dropped += getattr(self._line_exporter, "dropped", 0)
        self._line_exporter = None
        stream, self._stream = self._stream, None
        if stream is not None:  # the exporter leaves a stream it was given open
            stream.close()

    # -- origin sampling ------------------------------------------------------------------------
    def follow(self, actor: OriginSampler) -> None:
        """Sample ``actor``'s origin publishes: it is told (:meth:`OriginSampler.resample_origins`)
        now and whenever tracing is enabled or disabled. Held weakly."""
        with self._followers_lock:
            self._followers.add(actor)
        actor.resample_origins()

    def origin_gap(self) -> int:
        """How many origin publishes from now the next sampled one is (1: the next), drawn afresh.

        Publishes sampled each with probability :attr:`origin_ratio`, independently, are a gap
        between sampled ones that is geometric: one draw per *sampled* publish gives the same
        sampling as a coin toss per publish, and leaves each untraced one a comparison of counts.
        :attr:`NEVER` while the ratio is 0 (tracing disabled).
        """
        ratio = self.origin_ratio
        if ratio >= 1.0:
            return 1
        if ratio <= 0.0:
            return self.NEVER
        # failures before the first success of a Bernoulli(ratio) process: floor(log(U) / log(1 - ratio))
        return 1 + min(int(math.log1p(-self._random()) / self._log_keep), self.NEVER)

    def _set_origin_ratio(self, ratio: float) -> None:
        self.origin_ratio = ratio
        self._log_keep = math.log1p(-ratio) if 0.0 < ratio < 1.0 else -1.0
        with self._followers_lock:
            followers = list(self._followers)
        for actor in followers:  # their next sampled origin, drawn at the new ratio
            actor.resample_origins()

    def flush(self, timeout: float = 30.0) -> bool:
        """Export the queued spans now; False if that did not finish within ``timeout`` seconds."""
        provider = self._provider
        if provider is None:
            return True
        deadline = time.monotonic() + timeout
        if not provider.force_flush(int(timeout * 1000)):
            return False
        writer = self._writer
        return writer is None or writer.flush(max(0.0, deadline - time.monotonic()))

    def statistics(self) -> TracingStatistics:
        """A snapshot: the sampler, span counts and where spans go."""
        policy = self._policy if self.enabled else None
        return TracingStatistics(
            enabled=self.enabled,
            sampler=policy.name if policy is not None else None,
            ratio=self._ratio if self.enabled else 0.0,
            producer_spans=self._produced,
            consumer_spans=self._consumed,
            invalid_contexts=self._invalid,
            file=self._file if self.enabled else None,
            otlp_endpoint=self._endpoint if self.enabled else None,
            forced_ignored=self._ignored,
            max_forced_spans_per_second=self._max_forced,
            origins_over_budget=self._over_budget,
            max_origin_spans_per_second=self._max_origins,
            spans_dropped=self._dropped
            + getattr(self._processor, "dropped", 0)
            + getattr(self._line_exporter, "dropped", 0),
        )


def _bucket(rate: float | None, variable: str, default: float, name: str) -> tuple[TokenBucket, float]:
    """A per-second bound's bucket (burst: one second's worth, at least 1) and its rate: ``rate``,
    else ``$variable``, else ``default``; :class:`TracingError` for anything but a number >= 0."""
    if rate is None:
        text = os.environ.get(variable, "").strip()
        try:
            rate = float(text) if text else default
        except ValueError:
            raise TracingError(f"{variable}={text!r} is not a number of spans per second >= 0") from None
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not rate >= 0:
        raise TracingError(f"{name}={rate!r} is not a number of spans per second >= 0")
    return TokenBucket(float(rate), max(1.0, float(rate)) if rate else 0.0), float(rate)


def _finishing(on_end: Callable[[Any], None]) -> Callable[[tuple[Any, ...]], None]:
    """``record(values)`` for a span processor that takes spans only: the span made at once."""

    def record(values: tuple[Any, ...]) -> None:
        on_end(values[0](values))

    return record


tracing = Tracing()


def enable_tracing(
    service: str = "tickbus",
    *,
    actors: Sequence[str] = (),
    sampler: str | None = None,
    ratio: float | None = None,
    exporter: SpanExporter | None = None,
    max_forced_spans_per_second: float | None = None,
    rotation: Rotation | None = None,
    version: str | None = None,
    max_origin_spans_per_second: float | None = None,
) -> None:
    """Trace this process's actor messages: ``observability.tracing.enable(...)`` (see :class:`Tracing`)."""
    tracing.enable(
        service,
        actors=actors,
        sampler=sampler,
        ratio=ratio,
        exporter=exporter,
        max_forced_spans_per_second=max_forced_spans_per_second,
        rotation=rotation,
        version=version,
        max_origin_spans_per_second=max_origin_spans_per_second,
    )


def disable_tracing() -> None:
    """Stop tracing and flush the queued spans: ``observability.tracing.disable()``."""
    tracing.disable()
