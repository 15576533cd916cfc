"""Where the profiling collector's windows go: the store, then the regression detector and its alerts.

A closed window is stored (a full disk counts it lost, one log line every 30 s), then handed to the
detector, which a group's recent stored windows seed the first time the group is seen (a restarted
collector keeps its baselines); its events go to the alert dispatcher. One INFO line says when a
group's detection is warming up and one when it is ready. The store's file is looked at now and
then (an operator's ``rm`` reopens it) and its retention applied.

One floor of :class:`tickbus.collector.Profiler`, which sets up the state annotated here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from loguru import logger

from observability import ProfileStoreError, RateLimitedLog
from observability.profiling import (
    AlertDispatcher,
    DetectionConfig,
    ProfileStore,
    ProfileWindow,
    Regression,
    RegressionDetector,
    format_duration,
)


class _Settings(Protocol):
    """What this side reads of :class:`tickbus.collector.ProfilerConfig`."""

    @property
    def window(self) -> float: ...
    @property
    def detect(self) -> bool: ...
    @property
    def detection(self) -> DetectionConfig: ...


class StoredWindows:
    """The window side of :class:`tickbus.collector.Profiler` (see the module's docstring)."""

    config: _Settings
    store: ProfileStore
    detector: RegressionDetector
    alerts: AlertDispatcher
    on_alert: Callable[[Regression], None] | None
    _log: RateLimitedLog
    _seeded: set[tuple[str, str]]
    _told: dict[tuple[str, str], bool]  # group -> readiness logged (False: waiting)
    _stored: int
    _lost: int

    def _check_store(self) -> None:
        try:
            if self.store.reopen_if_gone():  # an operator's rm, a cleaner: windows went nowhere
                logger.warning("profile store {} was deleted or replaced: opened anew", self.store.path)
        except ProfileStoreError as exc:  # the next check tries again; windows meanwhile are counted lost
            self._log.log("ERROR", "store-reopen", "{}", exc)

    def _retain(self) -> None:
        try:
            report = self.store.apply_retention(time.time())
        except ProfileStoreError as exc:
            logger.error("{}", exc)
            return
        if report.dropped_unreadable:
            logger.warning(
                "profile store retention dropped {} stored window(s) that no longer decode",
                report.dropped_unreadable,
            )
        if report.rolled_up or report.expired_rollups or report.dropped_for_size:
            logger.info("profile store retention: {}", report)

    def _save(self, windows: list[ProfileWindow]) -> None:
        for window in windows:
            try:
                self.store.add(window)
            except ProfileStoreError as exc:  # a full disk fails every window: one line every 30 s
                self._lost += 1
                self._log.log("ERROR", "store", "{}; {} windows lost so far", exc, self._lost)
                continue
            self._stored += 1
            if self.config.detect:
                self._detect(window)
            logger.debug(
                "stored window of group {} pid {}: {} samples, {} handled",
                window.labels.group,
                window.labels.pid,
                window.samples,
                window.handled_total,
            )

    def _detect(self, window: ProfileWindow) -> None:
        key = (window.labels.host, window.labels.group)
        try:
            if key not in self._seeded:
                if len(self._seeded) >= self.detector.max_groups:  # bounded as the detector is
                    self._seeded.clear()  # seeding again costs one store query per group
                    self._told.clear()
                self._seeded.add(key)
                self.detector.seed(self._recent(window))
            events = self.detector.observe(window)
            self._tell_readiness(window)
        except Exception:  # a detector bug must not stop the collection
            logger.exception("regression detection failed on a window of group {}", window.labels.group)
            return
        self.alerts.handle(events)
        if self.on_alert is not None:
            for event in events:
                self.on_alert(event)

    def _tell_readiness(self, window: ProfileWindow) -> None:
        """One INFO line when a group's detection is still warming up, one when it is ready."""
        key = (window.labels.host, window.labels.group)
        told = self._told.get(key)
        if told:
            return
        readiness = self.detector.readiness(*key)
        if readiness.ready:
            self._told[key] = True
            logger.info(
                "regression detection ready for group {}: {} windows collected",
                window.labels.group,
                readiness.collected,
            )
        elif told is None:
            self._told[key] = False
            logger.info(
                "regression detection for group {} needs {} windows of {:g}s, has {}: ready in ~{}{}",
                window.labels.group,
                readiness.needed,
                self.config.window,
                readiness.collected,
                format_duration(readiness.remaining * self.config.window),
                f" ({readiness.thin} window(s) with too few samples ignored)" if readiness.thin else "",
            )

    def _recent(self, window: ProfileWindow) -> list[ProfileWindow]:
        """The group's stored windows before ``window`` (a restarted collector keeps its baselines)."""
        cfg = self.config.detection
        try:
            summaries = self.store.summaries(
                actor=window.labels.group, last=2 * (cfg.baseline_windows + cfg.max_pool) + 1
            )
        except ProfileStoreError as exc:
            logger.error("{}; detection starts without history", exc)
            return []
        ids = [
            s.id
            for s in summaries
            if s.host == window.labels.host and s.group == window.labels.group and s.end < window.end
        ]
        try:
            return self.store.load(ids)
        except ProfileStoreError as exc:
            logger.error("{}; detection starts without history", exc)
            return []
