"""The root of tickbus's one exception tree, and the observability package's branch of it::

    TickbusError                root of everything tickbus raises on purpose (re-exported by actors)
    ├── ...                     actors' and broker's branches: see actors/_errors.py, broker/_errors.py
    └── ObservabilityError      anything observability cannot set up
        ├── MetricsError        metrics exporters cannot start (a port in use, a file not writable)
        ├── TracingError        tracing cannot start (a bad sampler setting), or a trace cannot be read
        └── ProfilerError       the profiling collector's branch: see _profiler_errors.py

The root lives here, in the bottom layer, because actors imports observability (histograms, probes)
and every package must be able to derive from it without an import cycle.
"""

from __future__ import annotations


class TickbusError(Exception):
    """Root of every error tickbus raises on purpose."""


class ObservabilityError(TickbusError):
    """Root of the errors raised by :mod:`observability`."""


class MetricsError(ObservabilityError):
    """A metrics exporter cannot start; the message names the endpoint or file and the fix."""


class TracingError(ObservabilityError):
    """Tracing cannot start or a trace file cannot be read; the message names the setting or file."""
