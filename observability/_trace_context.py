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
    from opentelemetry.trace import Span

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\Z")


class TracedHeader(Protocol):
    """What tracing reads from an envelope header (``actors.Header``)."""

    @property
    def publisher(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def trace(self) -> list[str] | None: ...


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


class OriginSampler(Protocol):
    """An actor whose origin publishes tracing samples (see ``Tracing.follow``)."""

    def resample_origins(self) -> None:
        """Draw the next sampled origin afresh (``Tracing.origin_gap``): the ratio changed."""


Handler = Callable[[Any, Any], Any]


def failed(span: Span, exc: Exception) -> None:
    """Record ``exc`` on ``span`` and mark it failed."""
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
