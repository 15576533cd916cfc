"""SpanLineExporter writes what opentelemetry-exporter-otlp-json-file writes, for every kind of span.

The library's encoder is the reference: each case encodes the same finished spans with both and
compares the decoded lines, so an exporter upgrade that changes the format fails here.
"""

from __future__ import annotations

import io
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.json.file import FileSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState

from observability._producer_span import Fields, Producer, ProducerSpan
from observability._span_json import SpanLineExporter


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def lines(exporter_type: type, spans: list[ReadableSpan]) -> list[object]:
    stream = io.StringIO()
    exporter = (
        FileSpanExporter(stream=stream) if exporter_type is FileSpanExporter else SpanLineExporter(stream)
    )
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    # split as a file's lines are read (not str.splitlines: the library escapes U+0085 and U+2028,
    # msgspec writes them as they are, and JSON lines readers split on newlines only)
    return [json.loads(line) for line in io.StringIO(stream.getvalue(), newline=None)]


def assert_same(spans: list[ReadableSpan]) -> None:
    ours, theirs = lines(SpanLineExporter, spans), lines(FileSpanExporter, spans)
    assert ours == theirs


def provider(resource: Resource | None = None) -> tuple[TracerProvider, Keep]:
    keep = Keep()
    made = TracerProvider(resource=resource or Resource.create({"service.name": "svc", "n": 3}))
    made.add_span_processor(SimpleSpanProcessor(keep))
    return made, keep


REMOTE = SpanContext(
    0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v")])
)


def test_the_spans_tickbus_makes_are_written_as_the_library_writes_them() -> None:
    made, keep = provider()
    tracer = made.get_tracer("tickbus", "0.1.0")
    producer = tracer.start_span(
        "publish tick", kind=SpanKind.PRODUCER, attributes={"messaging.system": "tickbus", "k": "tick/AAPL"}
    )
    producer.set_attribute("messaging.message.id", "feed@h:1:2:3")
    producer.end()
    consumer = tracer.start_span(  # a handler's span: a remote parent and a link
        "process tick",
        context=set_span_in_context(NonRecordingSpan(REMOTE)),
        kind=SpanKind.CONSUMER,
        links=[Link(REMOTE, {"why": "sent"})],
    )
    consumer.set_status(Status(StatusCode.ERROR, "handler raised"))
    consumer.record_exception(ValueError("bad tick"))
    consumer.end()
    tracer.start_span("ok", kind=SpanKind.INTERNAL).end()
    other = made.get_tracer("another")  # a second scope in the same export
    with other.start_as_current_span("parent"), other.start_as_current_span("child") as child:
        child.set_status(Status(StatusCode.OK))
        child.add_event("note", {"n": 1})
    assert len(keep.spans) == 5
    assert_same(keep.spans)
    assert_same(keep.spans[:1])
    assert lines(SpanLineExporter, []) == lines(FileSpanExporter, []) == []


def test_a_sampled_publishs_record_is_written_as_the_library_writes_its_span() -> None:
    """The trace file's exporter encodes a producer record without making its span: the line is the
    one the library writes for the span the record makes, in every shape (a parent, a trace state,
    nothing sent, a sender that needs escaping), mixed with spans of another resource and scope."""
    made, keep = provider()
    scope = InstrumentationScope("tickbus", "0.1.0", schema_url="https://example.org/s")
    producer = Producer(made.resource, scope, "tickbus")
    other = Producer(Resource.create({"service.name": "other"}), InstrumentationScope("x"), "tickbus")
    local = SpanContext(0xABC, 0x456, is_remote=False, trace_flags=TraceFlags(1))
    def tp(trace_id: int, span_id: int) -> str:
        return f"00-{trace_id:032x}-{span_id:016x}-01"

    records = [  # (producer, traceparent, parent, state, actor, key, sender, seq, start, end)
        (producer, tp(0xABC, 0x123), None, None, "feed", ("tick", "A"), "feed@h:1:2:3", 7, 10, 20),
        (producer, tp(0xABC, 0x124), local, None, "feed", ("tick", "A"), 'f "q"\u2028@h', 8, 11, 21),
        (producer, tp(0xABC, 0x125), REMOTE, REMOTE.trace_state, "feed", ("tick",), "feed@h", 9, 12, 22),
        (producer, tp(0xABC, 0x126), None, None, "model", (), "model@h", 0, 13, 23),  # nothing sent
        (other, tp(0xDEF, 1 << 63), None, None, "feed", ("tick", "B"), "feed@h:1:2:3", 1 << 40, 14, 24),
        (producer, tp(0xABC, 0x128), None, None, "feed", ("tick", "A"), "feed@h:1:2:3", 10, 15, 25),
    ]
    with made.get_tracer("t").start_as_current_span("a span among them"):
        pass
    items = [*records[:3], keep.spans[0], *records[3:]]
    ours = lines(SpanLineExporter, items)  # type: ignore[arg-type]
    theirs = lines(FileSpanExporter, [r[0](r) if isinstance(r, tuple) else r for r in items])
    assert ours == theirs and len(ours) == 1
    spans = [s for rs in ours[0]["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]  # type: ignore[index]
    assert len(spans) == len(items)


def test_a_producer_span_is_written_from_its_fields_as_the_library_writes_it_and_reads_as_the_sdks() -> None:
    made, _ = provider()
    scope = InstrumentationScope("tickbus", "0.1.0")
    common = {"messaging.system": "tickbus", "messaging.destination.name": 'tick/"A\u2028"'}
    other = {"messaging.system": "tickbus"}  # another actor or key: its own cached parts
    cases = (  # tickbus's usual shapes, nothing sent, then a trace state
        (None, None, common, "publish tick", "feed@h:1:2:3"),
        (REMOTE, None, common, "publish tick", 'feed "q"\u2028@h:1:2:3'),
        (None, None, other, "publish \u00e9", None),  # nothing sent: tickbus.skipped
        (None, None, common, "", "feed@h:1:2:4"),  # the same common attributes under another name
        (REMOTE, REMOTE.trace_state, common, "publish tick", "feed@h:1:2:5"),
    )
    for parent, state, attributes, name, message_id in cases:
        fields = Fields(
            made.resource, scope, 0xABC, 0x123, parent, state, name, attributes, message_id, 10, 20
        )
        span = ProducerSpan(fields)
        assert "_name" not in vars(span)  # nothing of the SDK's made yet
        assert_same([span])  # ours from its fields, then the library's through the SDK's properties
        assert "_name" in vars(span)  # the library's read made them
        last = {"messaging.message.id": message_id} if message_id else {"tickbus.skipped": True}
        assert (span.name, span.kind, span.parent, span.attributes) == (
            name,
            SpanKind.PRODUCER,
            parent,
            {**attributes, **last},
        )
        assert attributes in (common, other) and "tickbus.skipped" not in attributes  # never changed
        assert (span.start_time, span.end_time, span.resource, span.instrumentation_scope) == (
            10,
            20,
            made.resource,
            scope,
        )
        context = span.get_span_context()
        assert (context.trace_id, context.span_id, context.is_remote) == (0xABC, 0x123, False)
        assert context.trace_flags.sampled and context.trace_state == (state or TraceState())
        assert json.loads(span.to_json())["kind"] == "SpanKind.PRODUCER"  # the SDK's own method
        assert (span.events, span.links, span.dropped_attributes) == ((), (), 0)
        with pytest.raises(AttributeError):
            span._not_a_field  # noqa: B018 -- an attribute nobody set is still missing


def test_spans_of_two_resources_in_one_export() -> None:
    one, keep_one = provider(Resource.create({"service.name": "a"}))
    two, keep_two = provider(
        Resource({"service.name": "b"}, schema_url="https://opentelemetry.io/schemas/1.21.0")
    )
    one.get_tracer("t").start_span("x").end()
    two.get_tracer("t", schema_url="https://example/s").start_span("y").end()
    one.get_tracer("t").start_span("z").end()
    assert_same([keep_one.spans[0], keep_two.spans[0], keep_one.spans[1]])


VALUES = st.one_of(
    st.text(max_size=8),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.text(max_size=3), max_size=3),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.lists(st.floats(allow_nan=False), max_size=3),
    st.lists(st.booleans(), max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=6), VALUES, max_size=6))
def test_attribute_values_of_every_type(attributes: dict[str, object]) -> None:
    made, keep = provider()
    span = made.get_tracer("t").start_span("s", attributes=attributes)  # type: ignore[arg-type]
    span.add_event("e", attributes)  # type: ignore[arg-type]
    span.end()
    ours, theirs = lines(SpanLineExporter, keep.spans), lines(FileSpanExporter, keep.spans)
    # NaN is never equal to itself: compare the JSON text of both (json writes NaN as "NaN")
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)


def test_a_closed_stream_fails_the_export_without_raising() -> None:
    made, keep = provider()
    made.get_tracer("t").start_span("s").end()
    stream = io.StringIO()
    exporter = SpanLineExporter(stream)
    stream.close()
    assert exporter.export(keep.spans) == SpanExportResult.FAILURE


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_doubles(value: float) -> None:
    made, keep = provider()
    made.get_tracer("t").start_span("s", attributes={"x": value}).end()
    assert_same(keep.spans)
