"""The W3C trace context a sampled message carries, and what tracing needs of actors and messages.

An envelope header's ``trace`` field is ``[traceparent, tracestate]`` (W3C Trace Context: the
``traceparent`` ``00-<trace id>-<parent span id>-<flags>`` in lowercase hex, ``tracestate`` as its
header value, often empty). :mod:`broker._envelope` checks only that it is two strings; this module
parses it, for sampled messages only. The protocols describe the parts of ``actors`` that
:mod:`._tracing` reads, so this package does not import ``actors`` (which imports it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanContext

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")


class TracedHeader(Protocol):
    """What tracing reads from an envelope header (``actors.Header``)."""

    @property
    def publisher(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def trace(self) -> list[str] | None: ...


class TracedMessage(Protocol):
    """What tracing reads from a delivered message (``actors.Message``)."""

    @property
    def key(self) -> tuple[str, ...]: ...
    @property
    def header(self) -> TracedHeader | None: ...


class TracedHub(Protocol):
    """The hub method tracing calls (``actors.Hub.publish``): returns the message's sequence, 0 if skipped."""

    name: str

    def publish(self, key: tuple[str, ...], message: Any, trace: list[str] | None = None) -> int: ...


class TracedActor(Protocol):
    """What tracing reads from an actor."""

    @property
    def name(self) -> str: ...
    @property
    def hub(self) -> TracedHub: ...


Handler = Callable[[Any, Any], Any]


def in_trace(traceparent: str) -> bool:
    """True when the span current in this task belongs to the trace of ``traceparent``."""
    from opentelemetry.trace import get_current_span

    return format(get_current_span().get_span_context().trace_id, "032x") == traceparent[3:35]


def remote_context(trace: list[str] | None) -> SpanContext | None:
    """The producer's span context from a header's ``[traceparent, tracestate]``, if well-formed."""
    if trace is None:
        return None
    match = TRACEPARENT.match(trace[0])
    if match is None:
        return None
    from opentelemetry.trace import SpanContext, TraceFlags, TraceState

    try:
        state = TraceState.from_header([trace[1]]) if trace[1] else TraceState()
    except ValueError:
        state = TraceState()
    context = SpanContext(
        int(match[1], 16),
        int(match[2], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(match[3], 16)),
        trace_state=state,
    )
    return context if context.is_valid else None


def failed(span: Span, exc: Exception) -> None:
    """Record ``exc`` on ``span`` and mark it failed."""
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def close(span: Span, token: Token[Context]) -> None:
    """End a consumer span and make the context before it current again."""
    from opentelemetry import context as otel_context

    otel_context.detach(token)
    span.end()
