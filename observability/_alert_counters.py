"""The profiling collector's plain counters, read by the metrics exporter: its alerts, and its
scheduling class (kept apart: importing this must not load the profiler, Austin or the detector
into actor processes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AlertCounters:
    """Counters of the profile alerts this process raised; read by the metrics exporter."""

    raised: int = 0
    resolved: int = 0
    active: int = 0
    webhook_sent: int = 0
    webhook_failures: int = 0
    file_failures: int = 0


profile_alerts = AlertCounters()


@dataclass
class SchedulingCounters:
    """The collector's scheduling class (``tickbus profiler``, tickbus/_scheduling.py): whether it
    watches for starvation, whether it is at nice 19 for it now, how many times it went there."""

    watching: bool = False
    starved: bool = False
    episodes: int = 0


profiler_scheduling = SchedulingCounters()
