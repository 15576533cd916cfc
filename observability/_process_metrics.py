"""The process's own metrics: CPU time, memory, the loop's health, tracing's and logging's losses, and
the profile collector's alerts and scheduling; one observable instrument each (see
:mod:`._metric_catalog`, which registers them beside the actors', hubs' and brokers')."""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from ._alert_counters import profile_alerts
from ._logging import log_statistics
from ._loop_health import hang_watchdog, slow_callbacks
from ._rotation import WRITE_FAILURES
from ._scheduling import profiler_scheduling
from ._tracing import tracing

Callback = Callable[[CallbackOptions], Iterable[Observation]]


def _cpu(options: CallbackOptions) -> Iterable[Observation]:
    times = os.times()
    return [Observation(times.user, {"cpu.mode": "user"}), Observation(times.system, {"cpu.mode": "system"})]


def _rss(options: CallbackOptions) -> Iterable[Observation]:
    if sys.platform == "linux":
        with open("/proc/self/statm") as statm:
            return [Observation(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))]
    return [Observation(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)]  # peak, elsewhere


def _loop_counters(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(slow_callbacks.slow)] if slow_callbacks.enabled or slow_callbacks.slow else []


def _hangs(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(hang_watchdog.hangs)] if hang_watchdog.enabled or hang_watchdog.hangs else []


def _profile_alerts(options: CallbackOptions) -> Iterable[Observation]:
    counts = profile_alerts
    if not (counts.raised or counts.resolved):
        return []
    return [
        Observation(counts.raised, {"tickbus.alert.state": "active"}),
        Observation(counts.resolved, {"tickbus.alert.state": "resolved"}),
    ]


def _starved(options: CallbackOptions) -> Iterable[Observation]:
    state = profiler_scheduling
    return [Observation(int(state.starved))] if state.watching else []


def _starvation_episodes(options: CallbackOptions) -> Iterable[Observation]:
    state = profiler_scheduling
    return [Observation(state.episodes)] if state.watching or state.episodes else []


def _spans(options: CallbackOptions) -> Iterable[Observation]:
    stats = tracing.statistics()
    if not (stats.enabled or stats.producer_spans or stats.consumer_spans):
        return []
    return [
        Observation(stats.producer_spans, {"span.kind": "producer"}),
        Observation(stats.consumer_spans, {"span.kind": "consumer"}),
    ]


def _untraced(options: CallbackOptions) -> Iterable[Observation]:
    stats = tracing.statistics()
    counts = {
        "over_budget": stats.origins_over_budget,  # origins past max_origin_spans_per_second
        "forced_ignored": stats.forced_ignored,  # received contexts past max_forced_spans_per_second
        "invalid_context": stats.invalid_contexts,
    }
    if not (stats.enabled or any(counts.values())):
        return []
    return [Observation(n, {"tickbus.reason": reason}) for reason, n in counts.items()]


def _export_failures(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(n, {"signal": signal}) for signal, n in sorted(WRITE_FAILURES.items())]


def _log_lost(options: CallbackOptions) -> Iterable[Observation]:
    stats = log_statistics()
    return [
        Observation(stats.dropped, {"tickbus.reason": "queue_full"}),
        Observation(stats.failures, {"tickbus.reason": "write_failed"}),
    ]


def _spans_dropped(options: CallbackOptions) -> Iterable[Observation]:
    stats = tracing.statistics()
    return [Observation(stats.spans_dropped)] if stats.enabled or stats.spans_dropped else []


PROCESS_INSTRUMENTS: tuple[
    tuple[str, Callback, str, str, bool], ...
] = (  # (name, callback, unit, description, up-down)
    ("process.cpu.time", _cpu, "s", "CPU time of this process, by cpu.mode", False),
    ("process.memory.usage", _rss, "By", "Resident set size of this process", True),
    (
        "tickbus.loop.slow_callbacks",
        _loop_counters,
        "{callback}",
        "Event-loop callbacks that ran longer than the slow-callback threshold",
        False,
    ),
    (
        "tickbus.profile.alerts",
        _profile_alerts,
        "{alert}",
        "Profile regression alerts raised and resolved by this collector (tickbus.alert.state)",
        False,
    ),
    (
        "tickbus.profile.alerts.active",
        lambda options: [Observation(profile_alerts.active)],
        "{alert}",
        "Profile regression alerts currently active",
        True,
    ),
    (
        "tickbus.profile.starved",
        _starved,
        "{state}",
        "1 while the collector runs at nice 19 because its CPUs were saturated, 0 at SCHED_IDLE",
        True,
    ),
    (
        "tickbus.profile.starvation.episodes",
        _starvation_episodes,
        "{episode}",
        "Times the collector left SCHED_IDLE for nice 19 because its CPUs were saturated",
        False,
    ),
    (
        "tickbus.tracing.spans",
        _spans,
        "{span}",
        "Spans made for sampled messages, by span.kind (producer: a send, consumer: a handler)",
        False,
    ),
    (
        "tickbus.tracing.spans.dropped",
        _spans_dropped,
        "{span}",
        "Finished spans dropped before export: the export queue was full",
        False,
    ),
    (
        "tickbus.log.lost",
        _log_lost,
        "{line}",
        "Log lines not written, by tickbus.reason (queue_full: the stream fell TICKBUS_LOG_QUEUE lines "
        "behind, a stalled journal say; write_failed: a closed or broken stream)",
        False,
    ),
    (
        "tickbus.export.failures",
        _export_failures,
        "{write}",
        "Failed writes of a metrics or traces file (full disk, read-only or vanished directory), by signal",
        False,
    ),
    (
        "tickbus.tracing.untraced",
        _untraced,
        "{message}",
        "Sampled messages sent or handled without a span, by tickbus.reason (over_budget: origins past "
        "max_origin_spans_per_second; forced_ignored: received contexts past max_forced_spans_per_second; "
        "invalid_context)",
        False,
    ),
    (
        "tickbus.loop.hangs",
        _hangs,
        "{hang}",
        "Times the event loop did not turn for the hang watchdog's timeout",
        False,
    ),
)
