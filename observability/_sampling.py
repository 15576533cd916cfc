"""Trace sampling: decided once, where a message starts, before any OpenTelemetry object exists.

Problem: a span costs ~24 µs and the bus budget is a few µs per message, so an unsampled message
must never reach the SDK, and the decision must not be taken again at every hop.

Approach: the standard ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` setting is read once
into a :class:`SamplingPolicy` whose :attr:`~SamplingPolicy.ratio` is the probability that an
*origin* (a publish made outside any handler) is sampled. The decision there is one comparison:
an actor counts its publishes toward the next sampled one, at a gap drawn from the geometric
distribution (``Tracing.origin_gap``), which samples as a ``random() < ratio`` per publish would,
for ~100 ns less a publish (a sixth of an origin publish on the in-process hub). A sampled message
carries its trace context in the envelope header, an unsampled one carries nothing, and every
later hop follows what arrived. The SDK's sampler (:func:`sdk_sampler`) therefore records every
tickbus span it is asked about (the decision was made already) and applies the configured sampler
only to other spans (your own, through ``observability.tracing.tracer``).

Limits: origins are sampled by chance, not by trace id, so a downstream system re-sampling with
``traceidratio`` on the same trace ids would not agree with it; tickbus never re-samples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import TracingError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
    from opentelemetry.trace import Link, SpanKind, TraceState
    from opentelemetry.util.types import Attributes

DEFAULT_SAMPLER = "parentbased_traceidratio"
DEFAULT_RATIO = 0.01
SYSTEM = "tickbus"  # messaging.system of every tickbus span; the SDK sampler recognises them by it
_FIXED = {
    "always_on": 1.0,
    "always_off": 0.0,
    "parentbased_always_on": 1.0,
    "parentbased_always_off": 0.0,
}
_RATIO_BASED = ("traceidratio", "parentbased_traceidratio")


@dataclass(frozen=True)
class SamplingPolicy:
    """A sampler setting: its ``OTEL_TRACES_SAMPLER`` name and the probability of sampling an origin."""

    name: str
    ratio: float

    @property
    def parent_based(self) -> bool:
        """True for the ``parentbased_*`` samplers (they follow a parent span's decision)."""
        return self.name.startswith("parentbased_")


def sampling_policy(sampler: str | None = None, ratio: float | None = None) -> SamplingPolicy:
    """The policy from arguments, else ``$OTEL_TRACES_SAMPLER`` / ``$OTEL_TRACES_SAMPLER_ARG``.

    With neither: ``parentbased_traceidratio`` at 0.01. A ratio-based sampler named without a ratio
    samples everything, as the OpenTelemetry specification says. Raises :class:`TracingError` for
    a sampler or ratio tickbus cannot apply.
    """
    from_env = sampler is None
    name = (sampler if sampler is not None else os.environ.get("OTEL_TRACES_SAMPLER", "")).strip().lower()
    if not name:
        name = DEFAULT_SAMPLER
        if ratio is None and not os.environ.get("OTEL_TRACES_SAMPLER_ARG"):
            ratio = DEFAULT_RATIO
    if name in _FIXED:
        return SamplingPolicy(name, _FIXED[name])
    if name not in _RATIO_BASED:
        allowed = ", ".join([*_FIXED, *_RATIO_BASED])
        where = "OTEL_TRACES_SAMPLER" if from_env else "sampler"
        raise TracingError(f"{where}={name!r} is not a sampler tickbus supports; use one of {allowed}")
    if ratio is None:
        arg = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
        try:
            ratio = float(arg) if arg else 1.0
        except ValueError:
            raise TracingError(
                f"OTEL_TRACES_SAMPLER_ARG={arg!r} is not a number; give a sampling ratio from 0 to 1"
            ) from None
    if not 0.0 <= ratio <= 1.0:
        raise TracingError(f"trace sampling ratio {ratio} is outside 0..1; give e.g. 0.01 for 1%")
    return SamplingPolicy(name, float(ratio))


def sdk_sampler(policy: SamplingPolicy) -> Sampler:
    """The SDK sampler: tickbus spans always (decided at the origin), others by ``policy``."""
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_OFF,
        ALWAYS_ON,
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )
    from opentelemetry.trace import get_current_span

    root: Sampler
    if policy.name in _FIXED:
        root = ALWAYS_ON if policy.ratio == 1.0 else ALWAYS_OFF
    else:
        root = TraceIdRatioBased(policy.ratio)
    others = ParentBased(root) if policy.parent_based else root

    class TickbusSampler(Sampler):
        """Records tickbus spans (already decided); delegates the rest."""

        def should_sample(  # noqa: PLR0917  # the SDK's Sampler.should_sample signature
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            if attributes is not None and attributes.get("messaging.system") == SYSTEM:
                parent = get_current_span(parent_context).get_span_context()
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)
            return others.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"TickbusSampler{{{others.get_description()}}}"

    return TickbusSampler()
