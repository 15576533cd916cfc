"""The hooks of :class:`observability._tracing.Tracing` that actors call per sampled message.

``Actor.publish`` and ``Actor._consume`` call them only for a sampled origin or a message that
carries a trace context (see :mod:`._tracing` for when, and for the spans' names and attributes):
:meth:`MessageHooks.publish` and :meth:`MessageHooks.origin` send a message in a producer span
(:meth:`MessageHooks.send`), :meth:`MessageHooks.handler` runs a handler in a consumer span.
:class:`~observability._tracing.Tracing` (switching, origin sampling, statistics) is made of them:
what they read (``enabled``, the bound OpenTelemetry parts in ``_made``, the budgets, the counts) it
sets.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._ratelimit import TokenBucket
from ._sampling import SYSTEM
from ._trace_context import TRACEPARENT, Handler, TracedActor, TracedHeader, failed

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanContext, Tracer, TraceState

    from ._producer_span import Producer

_ID_BATCH = 64  # new traces' ids made at a time (see _new_traces)
_NEW_TRACES: list[str] = []  # traceparents of traces to start
os.register_at_fork(after_in_child=_NEW_TRACES.clear)  # a child must not start its parent's traces
_monotonic = time.monotonic


class _Made(NamedTuple):
    """What the hooks make spans with, imported and bound once by :meth:`Tracing.enable`."""

    make: Callable[..., Any]  # ReadableSpan with this provider's resource and scope
    record: Callable[[tuple[Any, ...]], None]  # takes a finished span's record: (maker, its values)
    producer_span: Producer  # makes a sampled publish's span from its record
    span_context: Callable[..., SpanContext]
    sampled: Any  # TraceFlags(SAMPLED)
    producer: Any  # SpanKind.PRODUCER
    get_current_span: Callable[[], Span]
    remote_parent: Callable[[list[str]], SpanContext | None]  # the producer's context, or None
    consumer_span: Callable[..., Span]  # observability._consumer_span.ConsumerSpan
    set_span_in_context: Callable[[Span], Context]
    attach: Callable[[Context], Token[Context]]
    detach: Callable[[Token[Context]], None]


def _new_id(bits: int) -> int:
    """A random non-zero trace (128) or span (64) id, as the SDK's RandomIdGenerator makes them."""
    while not (value := random.getrandbits(bits)):
        pass
    return value


class MessageHooks:
    """The per-message half of :class:`~observability._tracing.Tracing`, which sets what it reads."""

    enabled: bool
    tracer: Tracer | None
    _made: _Made | None
    _ratio: float
    _random: Callable[[], float]
    _origins: TokenBucket  # origins a second that may start a trace
    _forced: TokenBucket  # received contexts a second that may make a consumer span
    _produced: int
    _consumed: int
    _invalid: int
    _ignored: int
    _over_budget: int

    def publish(self, actor: TracedActor, key: tuple[str, ...], payload: Any, trace: list[str]) -> None:
        """Publish ``payload`` at ``key`` from a handler of a message that carried ``trace``.

        In that handler's span the publish continues its trace. Outside it (the handler ran
        untraced: a malformed context, or a timer's publish while an async handler awaits) the
        publish is an origin again, sampled at the origin ratio. Origins and untraced messages
        never get here: ``Actor.publish`` decides those without a call (see :attr:`origin_ratio`).
        """
        traceparent, made = trace[0], self._made
        if made is None:  # disabled meanwhile
            actor.hub.publish(key, payload)
            return
        current = made.get_current_span().get_span_context()
        in_trace = current.is_valid and format(current.trace_id, "032x") == traceparent[3:35]
        if in_trace:
            self.send(actor, key, payload)
        elif (  # not in that handler's span (a timer's publish while an async handler awaits, or
            # the handler ran untraced): an origin, sampled at the origin ratio, unless the context
            # was malformed (then nothing of it is traced)
            TRACEPARENT.match(traceparent) is not None and self._random() < self._ratio
        ):
            self.origin(actor, key, payload)
        else:
            actor.hub.publish(key, payload)

    def origin(self, actor: TracedActor, key: tuple[str, ...], payload: Any) -> None:
        """Publish ``payload`` as an origin the sampler chose: in a producer span (:meth:`send`) while
        the process's trace budget (``max_origin_spans_per_second``) allows, else untraced, counted."""
        if not self.enabled:  # disabled since the actor drew its gap
            actor.hub.publish(key, payload)
        elif self._origins.take(_monotonic()):
            self.send(actor, key, payload)
        else:
            self._over_budget += 1
            actor.hub.publish(key, payload)

    def handler(
        self, actor: TracedActor, fn: Handler, is_async: bool, key: tuple[str, ...], header: TracedHeader
    ) -> Handler:
        """``fn`` wrapped in a consumer span for the message at ``key``: its ``header`` has a trace context.

        A malformed context is counted and the handler runs untraced. So is a context beyond
        ``max_forced_spans_per_second``: a sender decides that a message is sampled, so without a
        bound any peer could make this process export a span per message (``forced_ignored``).
        """
        if not self._forced.take(_monotonic()):  # decided before any OpenTelemetry object exists
            self._ignored += 1
            return fn
        made = self._made
        if made is None:  # disabled meanwhile
            return fn
        trace = header.trace
        remote = made.remote_parent(trace) if trace is not None else None
        if remote is None:
            self._invalid += 1
            return fn
        detach = made.detach
        start = functools.partial(self._process, made, actor, fn, key=key, header=header, remote=remote)
        # not functools.wraps (~2 us, more with its code cold): the actor names the handler by fn
        if is_async:

            async def traced_async(key: Any, payload: Any) -> Any:
                span, token = start()
                try:
                    return await fn(key, payload)
                except Exception as exc:
                    failed(span, exc)
                    raise
                finally:
                    detach(token)
                    span.end()

            return traced_async

        def traced(key: Any, payload: Any) -> Any:
            span, token = start()
            try:
                return fn(key, payload)
            except Exception as exc:
                failed(span, exc)
                raise
            finally:
                detach(token)
                span.end()

        return traced

    def current_ids(self) -> tuple[str, str] | None:
        """``(trace_id, span_id)`` in hex of the span current in this task, if tracing and one is active."""
        if not self.enabled:
            return None
        from opentelemetry.trace import get_current_span

        context = get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    # -- sampled messages only ------------------------------------------------------------------
    def send(self, actor: TracedActor, key: tuple[str, ...], payload: Any) -> None:
        """Publish ``payload`` in a producer span: an origin the sampler chose, or a trace's next hop."""
        # The producer span is made as the finished record it will be (observability._producer_span:
        # its values, a ReadableSpan once read) rather than through the SDK's Span (~14 us idle,
        # 20-30 under load): it is never current, nothing nests in it, and the sampler always records
        # tickbus spans (sdk_sampler). Only a publish that raises goes through the SDK, to record
        # the exception as it always did.
        tracer, made = self.tracer, self._made
        if tracer is None or made is None:  # disabled meanwhile
            actor.hub.publish(key, payload)
            return
        current = made.get_current_span().get_span_context()
        parent: SpanContext | None
        state: TraceState | None
        if current.is_valid:  # in a handler's consumer span (or the user's own): its trace
            parent, state = current, current.trace_state
            traceparent = _traceparent(current.trace_id, _new_id(64))
        else:  # a new trace: its ids made ahead, with others (warm, a batch at a time)
            try:
                traceparent = _NEW_TRACES.pop()
            except IndexError:  # the batch is spent (pop, extend: no thread gets another's ids)
                batch = _new_traces(_ID_BATCH)
                traceparent = batch.pop()
                _NEW_TRACES.extend(batch)
            parent = state = None
        start = time.time_ns()
        hub = actor.hub
        # the message first: everything else about the span waits until it is on its way
        trace = [traceparent, state.to_header() if state else ""]
        try:
            seq = hub.publish(key, payload, trace)
        except Exception as exc:
            name, attributes = made.producer_span.named(actor.name, key)
            span = tracer.start_span(name, kind=made.producer, attributes=attributes, start_time=start)
            failed(span, exc)
            span.end()
            raise
        # the rest of the span when it is exported: made there with the other spans of a drain, its
        # code warm, rather than here once in a hundred messages (see observability._producer_span.Producer)
        end = time.time_ns()
        made.record(
            (
                made.producer_span,
                traceparent,
                parent,
                state,
                actor.name,
                key,
                _sender(hub),
                seq,
                start,
                end,
            )
        )
        self._produced += 1

    def _process(
        self,
        made: _Made,
        actor: TracedActor,
        fn: Handler,
        *,
        key: tuple[str, ...],
        header: TracedHeader,
        remote: SpanContext,
    ) -> tuple[Span, Token[Context]]:
        # tickbus's own recording span (observability._consumer_span): the handler starts as soon
        # as it is current; the record is built when it ends
        attributes: dict[str, str] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": "/".join(key),
            "messaging.consumer.group.name": actor.name,
            "tickbus.actor": actor.name,
            "tickbus.handler": getattr(fn, "__qualname__", repr(fn)),
        }
        attributes["messaging.message.id"] = f"{header.publisher}:{header.seq}"
        trace_id, state = remote.trace_id, remote.trace_state
        context = made.span_context(trace_id, _new_id(64), False, made.sampled, state)
        name = f"process {key[0] if key else ''}"
        span = made.consumer_span(name, context, remote, attributes, finish=made.record, make=made.make)
        self._consumed += 1
        return span, made.attach(made.set_span_in_context(span))


def _traceparent(trace_id: int, span_id: int) -> str:
    return "00-%032x-%016x-01" % (trace_id, span_id)  # noqa: UP031 -- 100 ns less than an f-string


def _new_traces(count: int) -> list[str]:
    """``count`` traceparents of new traces (the ids are in it: a producer span's record keeps it).

    A sampled origin is one publish in a hundred: made there, its ids and traceparent ran code
    that the publishes between had pushed out of the CPU's caches (Austin on a publisher at ~140k
    msgs/s, 1 % sampled: the traceparent's one format took 0.6 % of the loop, ~4 us a sampled
    publish, against ~0.3 us run back to back). Made here a batch at a time, that code is warm
    for all but the first of each batch."""
    return [_traceparent(_new_id(128), _new_id(64)) for _ in range(count)]


def _sender(hub: Any) -> str:
    """The publisher id a hub's messages carry now (a broker-connected hub's ``sender_id``: it changes
    when the hub numbers its keys afresh), else the in-process hub's name."""
    sender: str = getattr(hub, "sender_id", None) or getattr(hub, "publisher_id", None) or hub.name
    return sender
