"""Spans to OTLP JSON lines, as ``opentelemetry-exporter-otlp-json-file`` writes them, ~6x cheaper.

Problem: the exporter's encoder builds a tree of generated message objects per span and converts
it to a dict: ~40-75 us of Python a span on the test VM. Spans are exported from the event loop
(see :mod:`observability._span_export`), so that time is time no message is handled: at 1 % of
10k msgs/s traced it cost the publisher ~0.5 us a message on average, a fifth of its throughput.

Approach: build the same JSON directly from the SDK's ``ReadableSpan`` (the OTLP/JSON mapping:
ids in hex, 64-bit integers as strings, enums as integers, empty fields left out), with the
resource and scope encoded once per distinct object, and the line's text joined from each span's.
A sampled publish's producer span is written from the record ``Tracing.send`` queued (see
``observability._producer_span.Producer``), one string format, no span made: counted with callgrind
(every message sampled, 64-span slices), that took its export from ~42,000 instructions to ~19,000.

``tests/observability/test_span_json.py`` checks it against the library's own encoder on every kind
of span tickbus makes, on records, and on attribute values of every type, so an upgrade of the
exporters that changes the format shows up there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from ._otlp_json import MAX_PAIRS, Encoded, attributes_list, json_encoder, schema_member
from ._producer_span import Fields, Producer, ProducerSpan, Record, span_attributes
from ._ratelimit import RateLimitedLog

if TYPE_CHECKING:
    from ._log_sink import QueuedSink

_HAS_IS_REMOTE = 0x100  # SpanFlags: the context's is_remote bit is known
_IS_REMOTE = 0x200
_KIND = {kind: kind.value + 1 for kind in SpanKind}
_PRODUCER = SpanKind.PRODUCER


def _flags(parent: Any) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if parent is not None and parent.is_remote else _HAS_IS_REMOTE


def _head(  # noqa: PLR0917 -- the fields every span has, as the OTLP mapping orders them
    trace_id: int,
    span_id: int,
    state: Any,
    parent: Any,
    name: str,
    kind: SpanKind,
    start_time: int | None,
    end_time: int | None,
    attributes: Mapping[str, Any] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": f"{trace_id:032x}", "spanId": f"{span_id:016x}"}
    if state:
        out["traceState"] = ",".join(f"{k}={v}" for k, v in state.items())
    if parent is not None:
        out["parentSpanId"] = f"{parent.span_id:016x}"
    out["flags"] = _flags(parent)
    if name:
        out["name"] = name
    out["kind"] = _KIND[kind]  # SPAN_KIND_INTERNAL is 1 in OTLP, 0 in the SDK
    if start_time:
        out["startTimeUnixNano"] = str(start_time)
    if end_time:
        out["endTimeUnixNano"] = str(end_time)
    if encoded := attributes_list(attributes):
        out["attributes"] = encoded
    return out


def _producer(f: Fields) -> str:
    """A producer span's JSON from its fields (none of the SDK's made: see _producer_span). The
    exporter writes tickbus's own from their records (:func:`_record`): this is for the rest (a
    trace state, nothing sent, a span handed to the exporter directly)."""
    out = _head(
        f.trace_id,
        f.span_id,
        f.state,
        f.parent,
        f.name,
        _PRODUCER,
        f.start_time,
        f.end_time,
        span_attributes(f),
    )
    out["status"] = {}  # unset: a publish that raised is recorded through the SDK
    return json_encoder.encode(out).decode()


# A record's span in one format (~1 us against ~4 us for the dict): its ids sliced from its
# traceparent, the members that are the same for every publish of one actor at one key from one
# sender (name, kind, attributes, the message id's "<sender>:") made once (_constant), the sequence
# number formatted in; the constant members together (OTLP JSON readers take members in any order).
_PRODUCER_RECORD = (
    '{"traceId":"%s","spanId":"%s"%s,"flags":%d,"startTimeUnixNano":"%d","endTimeUnixNano":"%d"%s%d"}}],'
    '"status":{}}'
)
_MESSAGE_ID = '{"key":"messaging.message.id","value":{"stringValue":'


def _record(record: Record) -> str:
    """A sampled publish's producer span from its record (see ``observability._producer_span.Producer``):
    in the usual shape no span, no fields, one format."""
    producer, traceparent, parent, state, actor, key, sender, seq, start, end = record
    if state or not seq or not start or not end:  # not the usual shape: through its span
        span: ProducerSpan = producer(record)
        return _producer(span._fields)
    constant = producer.texts.get((actor, key, sender)) or _constant(producer, actor, key, sender)
    above = "" if parent is None else ',"parentSpanId":"%016x"' % parent.span_id  # noqa: UP031
    values = (traceparent[3:35], traceparent[36:52], above, _flags(parent), start, end, constant, seq)
    return _PRODUCER_RECORD % values


def _constant(producer: Producer, actor: str, key: tuple[str, ...], sender: str) -> str:
    """The members of a record's span from ``"name"`` to its message id's ``<sender>:``, kept."""
    name, common = producer.named(actor, key)
    named = f',"name":{json_encoder.encode(name).decode()}' if name else ""
    pairs = json_encoder.encode(attributes_list(common)).decode()[1:-1]
    sender_part = json_encoder.encode(f"{sender}:").decode()[:-1]  # the closing quote follows the seq
    texts = producer.texts
    if len(texts) >= MAX_PAIRS:
        texts.clear()
    text = f'{named},"kind":{_KIND[_PRODUCER]},"attributes":[{pairs + "," if pairs else ""}{_MESSAGE_ID}'
    text = texts[(actor, key, sender)] = text + sender_part
    return text


def _text(span: ReadableSpan) -> str:
    """The OTLP JSON of one span."""
    if type(span) is ProducerSpan:
        return _producer(span._fields)
    return json_encoder.encode(_span(span)).decode()


def _span(span: ReadableSpan) -> dict[str, Any]:
    """The OTLP JSON of one span (not a :class:`ProducerSpan`) as a dict."""
    context = span.get_span_context()
    out = _head(
        context.trace_id if context else 0,
        context.span_id if context else 0,
        context.trace_state if context else None,
        span.parent,
        span.name,
        span.kind,
        span.start_time,
        span.end_time,
        span.attributes,
    )
    if span.dropped_attributes:
        out["droppedAttributesCount"] = span.dropped_attributes
    if span.events:
        out["events"] = [_event(event) for event in span.events]
    if span.dropped_events:
        out["droppedEventsCount"] = span.dropped_events
    if span.links:
        out["links"] = [_link(link) for link in span.links]
    if span.dropped_links:
        out["droppedLinksCount"] = span.dropped_links
    if span.status is not None:
        status: dict[str, Any] = {}
        if span.status.description:
            status["message"] = span.status.description
        if span.status.status_code.value:
            status["code"] = span.status.status_code.value
        out["status"] = status
    return out


def _event(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if event.timestamp:
        out["timeUnixNano"] = str(event.timestamp)
    if event.name:
        out["name"] = event.name
    if attributes := attributes_list(event.attributes):
        out["attributes"] = attributes
    if event.dropped_attributes:
        out["droppedAttributesCount"] = event.dropped_attributes
    return out


def _link(link: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": link.context.trace_id.to_bytes(16, "big").hex(),
        "spanId": link.context.span_id.to_bytes(8, "big").hex(),
    }
    if attributes := attributes_list(link.attributes):
        out["attributes"] = attributes
    if link.dropped_attributes:
        out["droppedAttributesCount"] = link.dropped_attributes
    out["flags"] = _flags(link.context)
    return out


_NO_GROUP = object()  # no resource or scope is it (a span's may be None)


def encode_line(items: Iterable[ReadableSpan | Record], cache: Encoded | None = None) -> str | None:
    """The OTLP JSON ``ExportTraceServiceRequest`` of ``items`` (spans, and records whose first item
    makes their span: a sampled publish's is encoded without one) as one line's text, no newline;
    ``None`` for none."""
    cache = cache if cache is not None else Encoded()
    # grouped by resource, then scope, as the library groups them (equal resources together), but
    # keyed by identity first: hashing a Resource dumps its attributes to JSON (~10 us) every time
    by_id: dict[int, tuple[Any, dict[Any, list[str]]]] = {}
    span: ReadableSpan
    scope: Any
    last: tuple[Any, Any, list[str]] = (_NO_GROUP, _NO_GROUP, [])  # the item before's group: most share it
    for item in items:
        if isinstance(item, tuple):
            producer = item[0]
            if type(producer) is Producer:
                resource, scope, text = producer.resource, producer.scope, _record(item)
            else:
                span = producer(item)
                resource, scope, text = span.resource, span.instrumentation_scope or None, _text(span)
        else:
            resource, scope, text = item.resource, item.instrumentation_scope or None, _text(item)
        if resource is last[0] and scope is last[1]:
            last[2].append(text)
            continue
        entry = by_id.get(id(resource))
        if entry is None:
            entry = by_id[id(resource)] = (resource, {})
        texts = entry[1].setdefault(scope, [])
        texts.append(text)
        last = (resource, scope, texts)
    if not by_id:
        return None
    groups: Iterable[tuple[Any, dict[Any, list[str]]]] = by_id.values()
    if len(by_id) > 1:  # equal resources merged; one resource object (the usual case) needs no hashing
        grouped: dict[Any, dict[Any, list[str]]] = {}
        for resource, scopes in by_id.values():
            into = grouped.setdefault(resource, {})
            for scope, texts in scopes.items():
                into.setdefault(scope, []).extend(texts)
        groups = grouped.items()
    resource_spans = []
    for resource, scopes in groups:
        scope_spans = []
        for scope, texts in scopes.items():
            spans = ",".join(texts)
            scope_spans.append(f'{{"scope":{cache.scope(scope)},"spans":[{spans}]{schema_member(scope)}}}')
        scoped = ",".join(scope_spans)
        resource_spans.append(
            f'{{"resource":{cache.resource(resource)},"scopeSpans":[{scoped}]{schema_member(resource)}}}'
        )
    return '{"resourceSpans":[' + ",".join(resource_spans) + "]}"


class SpanLineExporter(SpanExporter):
    """A ``SpanExporter`` writing one OTLP JSON line per export to ``stream`` (flushed each time).

    With a ``writer`` (a :class:`~observability._log_sink.QueuedSink` writing to the stream), an
    export encodes on the calling thread and the writer's thread writes: a stalled disk stops that
    thread, not the event loop. While ``writer.max_lines`` exports wait, an export is dropped before
    it is encoded, its spans counted in :attr:`dropped`.

    It :attr:`takes_records`: besides spans, :meth:`export` takes the records of tickbus's spans as
    ``observability._span_export.LoopSpanProcessor`` queues them, and encodes a sampled publish's
    without making its span (under half a producer span's export in instructions: see the module doc).
    """

    takes_records = True

    def __init__(self, stream: IO[str], writer: QueuedSink | None = None) -> None:
        self._stream = stream
        self._writer = writer
        self._cache = Encoded()
        self._lock = threading.Lock()  # orders whole exports (loop drain, flush, shutdown), never a span
        self._shutdown = False
        self._log = RateLimitedLog()
        self.failures = 0
        self.dropped = 0

    def export(self, spans: Sequence[ReadableSpan | Record]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        writer = self._writer
        if writer is not None and writer.full:  # the disk has not taken the last exports: no encoding
            self.dropped += len(spans)
            self._log.log(
                "WARNING", "span-writer", "trace file not taking lines: {} spans dropped so far", self.dropped
            )
            return SpanExportResult.FAILURE
        try:
            with self._lock:
                text = encode_line(spans, self._cache)
                if self._stream.closed:
                    return SpanExportResult.FAILURE
                line = text + "\n" if text is not None else None
                if writer is not None:  # its thread writes and flushes
                    if line is not None:
                        writer(line)
                else:
                    if line is not None:
                        self._stream.write(line)
                    self._stream.flush()
        except Exception as exc:  # an export must never raise into the drain (a full disk, say)
            self.failures += 1
            self._log.log("ERROR", "span-write", "writing spans failed ({} so far): {!r}", self.failures, exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """No more exports; the stream belongs to its creator."""
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Every export is flushed as it is written."""
        return True
