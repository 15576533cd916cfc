"""tickbus observability: logging, event-loop health, metrics, and cheap local histograms.

Only this package configures loguru sinks; the rest of tickbus calls ``logger`` lazily.
Loop-health probes are module-level objects with one-call ``enable()`` / ``disable()``::

    observability.slow_callbacks.enable(0.05)   # warn on callbacks holding the loop >= 50 ms
    observability.loop_lag.enable(0.25)         # lag percentiles
    observability.hang_watchdog.enable(3.0)     # dump every stack after a 3 s hang

Metrics are exported from what actors, hubs and brokers already count, never per message::

    observability.metrics.enable("my-service", hubs=[hub], prometheus_port=9464)
    ...
    observability.metrics.disable()             # exports once more, then stops

Sampled messages are traced (OpenTelemetry messaging spans; the decision is made once where a
message starts and travels in its envelope), and read back with ``tickbus trace list|show``::

    observability.enable_tracing("my-service")  # OTEL_TRACES_SAMPLER etc.; default 1% of origins
    ...
    observability.disable_tracing()             # flushes the queued spans
"""

import importlib
from typing import TYPE_CHECKING

from ._dilated import TimeDilatedLoop
from ._errors import MetricsError, ObservabilityError, TracingError
from ._histogram import Histogram
from ._logging import configure_logging
from ._loop_health import (
    HangWatchdog,
    LoopLagMonitor,
    LoopLagStatistics,
    SlowCallbackMonitor,
    SlowCallbackStatistics,
    describe_handle,
    dump_stacks,
    hang_watchdog,
    loop_lag,
    slow_callbacks,
)
from ._metrics import Metrics, MetricsStatistics, metrics
from ._resource import data_dir, process_resource, tickbus_version
from ._trace_view import TraceSpan, TraceSummary, find_trace, list_traces, render_trace
from ._tracing import Tracing, TracingStatistics, disable_tracing, enable_tracing, tracing

if TYPE_CHECKING:
    from ._austin import AustinSample, AustinSampler, SamplerStatistics, StackFrame, parse_sample
    from ._profile_store import ProfileStore, ProfileStoreStatistics, RetentionReport, WindowSummary
    from ._profiler import Profiler, ProfilerConfig, ProfilerStatistics
    from ._profiler_errors import ProfilerError, ProfileStoreError, PtraceNotPermittedError, SamplerError
    from ._regression import DetectionConfig, Regression, RegressionDetector
    from ._windows import FunctionShare, ProfileWindow, WindowFolder, WindowLabels, collapse, merge_windows

# The profiling collector's names load on first use: they import actors, which imports this package
# (a cycle at import time), and austin-python, which actor processes never need.
_LAZY = {
    "AustinSample": "._austin",
    "AustinSampler": "._austin",
    "SamplerStatistics": "._austin",
    "StackFrame": "._austin",
    "parse_sample": "._austin",
    "ProfileStore": "._profile_store",
    "ProfileStoreStatistics": "._profile_store",
    "RetentionReport": "._profile_store",
    "WindowSummary": "._profile_store",
    "Profiler": "._profiler",
    "ProfilerConfig": "._profiler",
    "ProfilerStatistics": "._profiler",
    "ProfileStoreError": "._profiler_errors",
    "ProfilerError": "._profiler_errors",
    "PtraceNotPermittedError": "._profiler_errors",
    "SamplerError": "._profiler_errors",
    "DetectionConfig": "._regression",
    "Regression": "._regression",
    "RegressionDetector": "._regression",
    "FunctionShare": "._windows",
    "ProfileWindow": "._windows",
    "WindowFolder": "._windows",
    "WindowLabels": "._windows",
    "collapse": "._windows",
    "merge_windows": "._windows",
}


def __getattr__(name: str) -> object:
    """Import a profiling collector name (see ``_LAZY``) when it is first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AustinSample",
    "AustinSampler",
    "DetectionConfig",
    "FunctionShare",
    "HangWatchdog",
    "Histogram",
    "LoopLagMonitor",
    "LoopLagStatistics",
    "Metrics",
    "MetricsError",
    "MetricsStatistics",
    "ObservabilityError",
    "ProfileStore",
    "ProfileStoreError",
    "ProfileStoreStatistics",
    "ProfileWindow",
    "Profiler",
    "ProfilerConfig",
    "ProfilerError",
    "ProfilerStatistics",
    "PtraceNotPermittedError",
    "Regression",
    "RegressionDetector",
    "RetentionReport",
    "SamplerError",
    "SamplerStatistics",
    "SlowCallbackMonitor",
    "SlowCallbackStatistics",
    "StackFrame",
    "TimeDilatedLoop",
    "TraceSpan",
    "TraceSummary",
    "Tracing",
    "TracingError",
    "TracingStatistics",
    "WindowFolder",
    "WindowLabels",
    "WindowSummary",
    "collapse",
    "configure_logging",
    "data_dir",
    "describe_handle",
    "disable_tracing",
    "dump_stacks",
    "enable_tracing",
    "find_trace",
    "hang_watchdog",
    "list_traces",
    "loop_lag",
    "merge_windows",
    "metrics",
    "parse_sample",
    "process_resource",
    "render_trace",
    "slow_callbacks",
    "tickbus_version",
    "tracing",
]
