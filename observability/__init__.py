"""tickbus observability: what every process needs to be observable and operable, nothing about the bus.

The bottom floor of tickbus (``tickbus`` → ``actors`` → ``broker`` → ``observability``): the one
exception tree (:mod:`observability._errors`), logging, metrics, tracing, loop health, histograms,
systemd notification, the TOML config loader, rate-limited logs, peer text made safe for a terminal
(:func:`printable`), and the profiling core as the subpackage :mod:`observability.profiling` (Austin,
windows, store, regression detection, alerts, views; imported on its own so that actor processes
never load Austin).

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

from ._alert_counters import AlertCounters, profile_alerts
from ._config import (
    BROKER_KEYS,
    PROFILER_KEYS,
    TABLES,
    apply_service_config,
    environment_values,
    load_table,
    read_toml,
)
from ._dilated import TimeDilatedLoop
from ._errors import (
    ActorError,
    AnswerError,
    AskError,
    AskTimeoutError,
    BindError,
    BrokerConfigError,
    BrokerError,
    ConfigError,
    ConnectError,
    ConsumeQueueNotFoundError,
    EnvelopeError,
    InvalidKeyError,
    MetricsError,
    NoAnswererError,
    ObservabilityError,
    ProfilerError,
    ProfileStoreError,
    PtraceNotPermittedError,
    SamplerError,
    SnapshotError,
    TickbusError,
    TracingError,
)
from ._exception_info import describe_exception, exception_fields
from ._histogram import Histogram
from ._histogram_export import DEFAULT_BOUNDS as HISTOGRAM_BOUNDS
from ._log_sink import LogStatistics
from ._logging import announce, configure_logging, flush_logs, log_failure, log_statistics
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
    set_callback_labeller,
    set_task_labeller,
    slow_callbacks,
)
from ._metrics import Metrics, MetricsStatistics, metrics
from ._ratelimit import RateLimitedLog, TokenBucket
from ._resource import data_dir, module_version, process_resource, tickbus_version
from ._rotation import RotatingFile, Rotation, rotated_files
from ._scheduling import (
    SchedulingCounters,
    child_processes,
    idle_scheduling,
    low_scheduling,
    profiler_scheduling,
    real_time_scheduling,
)
from ._systemd import SystemdNotifier, WatchdogFeeder, notify_service, parse_notify_address, watchdog_interval
from ._text import printable
from ._trace_view import (
    TraceSpan,
    TraceSummary,
    find_trace,
    list_traces,
    read_spans,
    render_list,
    render_trace,
    trace_files,
)
from ._tracing import Tracing, TracingStatistics, disable_tracing, enable_tracing, tracing

__all__ = [
    "ActorError",
    "AlertCounters",
    "AnswerError",
    "AskError",
    "AskTimeoutError",
    "BROKER_KEYS",
    "BindError",
    "BrokerConfigError",
    "BrokerError",
    "ConfigError",
    "ConnectError",
    "ConsumeQueueNotFoundError",
    "EnvelopeError",
    "HISTOGRAM_BOUNDS",
    "HangWatchdog",
    "Histogram",
    "InvalidKeyError",
    "LogStatistics",
    "LoopLagMonitor",
    "LoopLagStatistics",
    "Metrics",
    "MetricsError",
    "MetricsStatistics",
    "NoAnswererError",
    "ObservabilityError",
    "PROFILER_KEYS",
    "ProfileStoreError",
    "ProfilerError",
    "PtraceNotPermittedError",
    "RateLimitedLog",
    "RotatingFile",
    "Rotation",
    "SamplerError",
    "SchedulingCounters",
    "SlowCallbackMonitor",
    "SlowCallbackStatistics",
    "SnapshotError",
    "SystemdNotifier",
    "TABLES",
    "TickbusError",
    "TimeDilatedLoop",
    "TokenBucket",
    "TraceSpan",
    "TraceSummary",
    "Tracing",
    "TracingError",
    "TracingStatistics",
    "WatchdogFeeder",
    "announce",
    "apply_service_config",
    "child_processes",
    "configure_logging",
    "data_dir",
    "describe_exception",
    "describe_handle",
    "disable_tracing",
    "dump_stacks",
    "enable_tracing",
    "environment_values",
    "exception_fields",
    "find_trace",
    "flush_logs",
    "hang_watchdog",
    "idle_scheduling",
    "list_traces",
    "load_table",
    "log_failure",
    "log_statistics",
    "loop_lag",
    "low_scheduling",
    "metrics",
    "module_version",
    "notify_service",
    "parse_notify_address",
    "printable",
    "process_resource",
    "profile_alerts",
    "profiler_scheduling",
    "read_spans",
    "read_toml",
    "real_time_scheduling",
    "render_list",
    "render_trace",
    "rotated_files",
    "set_callback_labeller",
    "set_task_labeller",
    "slow_callbacks",
    "tickbus_version",
    "trace_files",
    "tracing",
    "watchdog_interval",
]
