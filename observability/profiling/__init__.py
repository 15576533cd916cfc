"""The profiling core: Austin samples folded into windows, stored, tested for regressions, viewed.

It knows nothing of the bus: the collector daemon (``tickbus profiler``, :mod:`tickbus.collector`)
discovers actor processes on the bus, attaches an :class:`AustinSampler` to each, and publishes the
alerts this core raises. Everything here works on a process id, a window and a file.

- :class:`AustinSampler` (the one adapter to Austin 3.7 / austin-python 1.7): CPU or wall samples
  of a running process, never stopping it;
- :class:`WindowFolder` / :class:`ProfileWindow`: collapsed stacks per time window, labelled with
  host, group, actors, pid, version and messages handled;
- :class:`ProfileStore`: ``profiles.sqlite``, compressed, rolled up and capped in size;
- :class:`RegressionDetector`: the method is in ``_regression.py``'s docstring; :class:`Readiness`
  says how many windows a group still needs before it is tested;
- :class:`AlertDispatcher`: alerts to a file, the log, a webhook, the metrics and a ``publish`` hook;
- views: ``format_top``, ``format_windows``, ``format_diff`` (changes within sampling noise marked
  ``~``), ``format_status``, ``export`` (speedscope, collapsed,
  pprof) and ``render_report`` (an HTML differential flame graph).

Importing this loads austin-python; actor processes never do.
"""

from ._alerts import AlertDispatcher, alert_record
from ._austin import (
    DEFAULT_INTERVAL_US,
    AustinSample,
    AustinSampler,
    Mode,
    SamplerStatistics,
    StackFrame,
    austin_binary,
    parse_sample,
    ptrace_denied,
    ptrace_fix,
)
from ._detection import IDLE_FUNCTIONS, DetectionConfig, Readiness, Regression
from ._flamegraph import render_report
from ._regression import RegressionDetector
from ._regression_stats import dispersion
from ._store import ProfileStore, ProfileStoreStatistics, RetentionReport, WindowSummary, default_store_path
from ._targets import Target, TargetTable, backoff_delay
from ._views import (
    GroupStatus,
    diff,
    export,
    format_diff,
    format_duration,
    format_status,
    format_top,
    format_windows,
    short_function,
    table,
)
from ._windows import (
    DEFAULT_WINDOW,
    FunctionShare,
    ProfileWindow,
    WindowFolder,
    WindowLabels,
    collapse,
    merge_windows,
)

__all__ = [
    "AlertDispatcher",
    "AustinSample",
    "AustinSampler",
    "DEFAULT_INTERVAL_US",
    "DEFAULT_WINDOW",
    "DetectionConfig",
    "FunctionShare",
    "GroupStatus",
    "IDLE_FUNCTIONS",
    "Mode",
    "ProfileStore",
    "ProfileStoreStatistics",
    "ProfileWindow",
    "Readiness",
    "Regression",
    "RegressionDetector",
    "RetentionReport",
    "SamplerStatistics",
    "StackFrame",
    "Target",
    "TargetTable",
    "WindowFolder",
    "WindowLabels",
    "WindowSummary",
    "alert_record",
    "austin_binary",
    "backoff_delay",
    "collapse",
    "default_store_path",
    "diff",
    "dispersion",
    "export",
    "format_diff",
    "format_duration",
    "format_status",
    "format_top",
    "format_windows",
    "merge_windows",
    "parse_sample",
    "ptrace_denied",
    "ptrace_fix",
    "render_report",
    "short_function",
    "table",
]
