"""The profile alerts' plain counters, read by the metrics exporter (kept apart: importing this must
not load the profiler, Austin or the detector into actor processes)."""

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
