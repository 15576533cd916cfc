"""tickbus observability: logging, event-loop health, and cheap local histograms.

Only this package configures loguru sinks; the rest of tickbus calls ``logger`` lazily.
Loop-health probes are module-level objects with one-call ``enable()`` / ``disable()``::

    observability.slow_callbacks.enable(0.05)   # warn on callbacks holding the loop >= 50 ms
    observability.loop_lag.enable(0.25)         # lag percentiles
    observability.hang_watchdog.enable(3.0)     # dump every stack after a 3 s hang
"""

from ._dilated import TimeDilatedLoop
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
from ._resource import data_dir, process_resource, tickbus_version

__all__ = [
    "HangWatchdog",
    "Histogram",
    "LoopLagMonitor",
    "LoopLagStatistics",
    "SlowCallbackMonitor",
    "SlowCallbackStatistics",
    "TimeDilatedLoop",
    "configure_logging",
    "data_dir",
    "describe_handle",
    "dump_stacks",
    "hang_watchdog",
    "loop_lag",
    "process_resource",
    "slow_callbacks",
    "tickbus_version",
]
