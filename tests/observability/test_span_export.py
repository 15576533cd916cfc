"""LoopSpanProcessor: spans exported on the event loop's thread, a bounded slice per callback."""

from __future__ import annotations

import threading

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from actors.testing import eventually
from observability._span_export import LoopSpanProcessor


class Recorder(SpanExporter):
    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self.names: list[str] = []
        self.shut = False

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.calls.append((len(spans), threading.current_thread().name))
        self.names += [span.name for span in spans]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut = True


def tracer(processor: LoopSpanProcessor):  # type: ignore[no-untyped-def]
    provider = TracerProvider()
    provider.add_span_processor(processor)  # type: ignore[arg-type]
    return provider, provider.get_tracer("test")


async def test_spans_go_out_on_the_loop_thread_in_slices_of_at_most_batch() -> None:
    recorder = Recorder()
    processor = LoopSpanProcessor(recorder, interval=0.01, batch=16)
    provider, t = tracer(processor)
    for _ in range(100):
        with t.start_as_current_span("s"):
            pass
    assert recorder.calls == []  # nothing exported while the spans were made
    await eventually(lambda: processor.exported == 100, 5, "every span exported")
    assert [n for n, _ in recorder.calls] == [16] * 6 + [4]
    assert {name for _, name in recorder.calls} == {threading.current_thread().name}
    provider.shutdown()
    assert recorder.shut


async def test_the_queue_is_bounded_and_drops_are_counted() -> None:
    recorder = Recorder()
    processor = LoopSpanProcessor(recorder, interval=10.0, batch=16, max_queue=10)
    provider, t = tracer(processor)
    for _ in range(25):
        with t.start_as_current_span("s"):
            pass
    assert processor.dropped == 15
    provider.shutdown()  # exports what was queued
    assert sum(n for n, _ in recorder.calls) == 10


def test_spans_ended_without_a_loop_are_exported_by_flush_and_shutdown() -> None:
    recorder = Recorder()
    processor = LoopSpanProcessor(recorder)
    provider, t = tracer(processor)
    with t.start_as_current_span("s"):
        pass
    assert processor.force_flush()
    assert sum(n for n, _ in recorder.calls) == 1
    with t.start_as_current_span("s"):
        pass
    provider.shutdown()
    assert sum(n for n, _ in recorder.calls) == 2 and recorder.shut


async def test_records_become_spans_when_exported_in_their_place_among_spans() -> None:
    recorder = Recorder()
    processor = LoopSpanProcessor(recorder, interval=0.01, batch=16, max_queue=40)
    made: list[int] = []

    def make(record: tuple[object, ...]) -> ReadableSpan:  # a record's first item makes its span
        made.append(record[1])  # type: ignore[arg-type]
        return ReadableSpan(name=f"record {record[1]}")

    provider, t = tracer(processor)
    for n in range(20):
        processor.on_end_record((make, n))
        with t.start_as_current_span(f"span {n}"):
            pass
    processor.on_end_record((make, 20))  # past max_queue: dropped and counted, as a span would be
    assert made == [] and processor.dropped == 1  # nothing made while queued
    await eventually(lambda: processor.exported == 40, 5, "every record and span exported")
    assert made == list(range(20))
    assert recorder.names == [name for n in range(20) for name in (f"record {n}", f"span {n}")]
    assert [n for n, _ in recorder.calls] == [16, 16, 8]
    assert {name for _, name in recorder.calls} == {threading.current_thread().name}
    provider.shutdown()


def test_a_drain_left_on_a_closed_loop_does_not_stop_export_on_the_next_loop() -> None:
    """A process may run more than one loop (asyncio.run twice, an embedding application): spans of
    the second are exported although the drain scheduled on the first never ran."""
    import asyncio

    recorder = Recorder()
    processor = LoopSpanProcessor(recorder, interval=10.0, batch=16, max_queue=100)
    provider, t = tracer(processor)

    async def spans(count: int) -> None:
        for _ in range(count):
            with t.start_as_current_span("s"):
                pass

    asyncio.run(spans(3))  # its drain is due in 10 s; the loop closes first
    processor._interval = 0.01

    async def second() -> None:
        await spans(3)
        await eventually(lambda: processor.exported == 6, 5, "the queued spans exported on the new loop")

    asyncio.run(second())
    assert processor.dropped == 0
    provider.shutdown()
