"""Profile regression alerts: where a :class:`~observability.profiling._detection.Regression` goes.

Each event of the detector (a regression raised, or resolved when its cost returned) becomes:

- one JSON object per line in the alerts file (``--alerts-file``, default ``<data dir>/alerts.jsonl``),
  see :func:`alert_record` for the fields;
- one loguru warning (raised) or info line (resolved);
- ``publish(record)``, set by the collector to put it on the bus (``('$alerts', 'profile', <actor>)``);
- a POST of the record as JSON to ``--webhook`` when one is given, in one worker thread (in order),
  with a timeout: failures are counted and logged (rate-limited to one line per minute), never raised;
- the counters of :data:`profile_alerts`, which the metrics exporter reads at each collection
  (``tickbus.profile.alerts`` by ``tickbus.alert.state``, ``tickbus.profile.alerts.active``,
  ``tickbus.profile.webhook.failures``).

De-duplication is the detector's: one event per regression while it lasts, one when it is resolved.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import functools
import json
import math
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loguru import logger

from .._alert_counters import AlertCounters, profile_alerts
from .._rotation import RotatingFile, Rotation
from ._detection import Regression

WEBHOOK_TIMEOUT = 5.0
MAX_WEBHOOK_POSTS = 100  # posts queued or in flight; more (a webhook that hangs) are failures at once
ALERTS_ROTATION = Rotation(max_bytes=32 * 1024 * 1024, keep=8, max_age_days=0)
"""The alerts file: renamed ``alerts.<UTC time>Z.jsonl`` at 32 MiB (~30,000 alerts), the newest 8 of
those kept whatever their age (it grew without bound: one line per alert raised or resolved)."""
_FAILURE_LOG_EVERY = 60.0


@functools.lru_cache(maxsize=512)
def definition_line(file: str, qualname: str) -> int:
    """The line of ``def <qualname>`` in ``file`` (``Class.method`` included); 0 if not found."""
    try:
        tree = ast.parse(Path(file).read_text(errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return 0
    parts = qualname.split(".")

    def find(body: list[ast.stmt], depth: int) -> int:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and (
                node.name == parts[depth]
            ):
                if depth == len(parts) - 1:
                    return node.lineno
                found = find(node.body, depth + 1)
                if found:
                    return found
        return 0

    return find(tree.body, 0) if parts and all(parts) else 0


def function_location(label: str) -> dict[str, Any]:
    """``{"name", "file", "line"}`` of a window frame label ``file:qualified.name``."""
    file, sep, name = label.rpartition(":")
    if not sep:
        return {"name": label, "file": "", "line": 0}
    return {"name": name, "file": file, "line": definition_line(file, name.replace("<locals>.", ""))}


def alert_actor(regression: Regression) -> str:
    """The actor an alert is about: the group's only actor, else the group name."""
    return regression.actors[0] if len(regression.actors) == 1 else regression.group


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def alert_record(regression: Regression, now: float | None = None) -> dict[str, Any]:
    """The JSON object of one alert event (``state`` ``active`` or ``resolved``)."""
    r = regression
    return {
        "time": time.time() if now is None else now,
        "state": r.state,
        "host": r.host,
        "group": r.group,
        "actor": alert_actor(r),
        "actors": list(r.actors),
        "pid": r.pid,
        "version": r.version,
        "baseline_version": r.baseline_version,
        "function": function_location(r.function),
        "share": r.kind,
        "baseline_share": round(r.baseline_share, 6),
        "current_share": round(r.current_share, 6),
        "relative_change": _finite(round(r.relative_change, 6)),
        "confidence": round(r.confidence, 6),
        "p_value": r.p_value,
        "windows": r.windows,
        "baseline_windows": r.baseline_windows,
        "since": r.since,
        "detected_at": r.at,
        "per_message_change": None if r.per_message_change is None else round(r.per_message_change, 6),
    }


def describe(record: dict[str, Any]) -> str:
    """One line for the log: function, actor, version and the change."""
    fn = record["function"]
    where = f"{fn['name']} ({fn['file']}:{fn['line']})"
    change = record["relative_change"]
    change_text = "new" if change is None else f"{change:+.1%}"
    share = f"{record['baseline_share']:.1%} -> {record['current_share']:.1%}"
    head = "profile regression" if record["state"] == "active" else "profile regression resolved"
    return (
        f"{head}: {where} in actor {record['actor']} (group {record['group']}, pid {record['pid']}, "
        f"version {record['version'] or '-'}): {record['share']} share {share} ({change_text}) over "
        f"{record['windows']} window(s), confidence {record['confidence']:.4f}"
    )


Publish = Callable[[dict[str, Any]], None]


class AlertDispatcher:
    """Sends each detector event to the file, the log, the bus, the webhook and the counters."""

    def __init__(
        self,
        alerts_file: Path | None,
        *,
        webhook: str | None = None,
        publish: Publish | None = None,
        counters: AlertCounters = profile_alerts,
        timeout: float = WEBHOOK_TIMEOUT,
    ) -> None:
        self.alerts_file = alerts_file
        self.webhook = webhook
        self.publish = publish
        self.counters = counters
        self.timeout = timeout
        self._posts: set[asyncio.Future[None]] = set()
        # one thread: posts leave in the order of the events (raised before resolved)
        self._poster = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alert-webhook")
        self._last_failure_log = -math.inf
        self._stream: RotatingFile | None = None  # opened at the first alert (again after a failed open)

    def handle(self, events: list[Regression]) -> list[dict[str, Any]]:
        """Dispatch ``events``; returns their records."""
        records = []
        for event in events:
            record = alert_record(event)
            records.append(record)
            if event.state == "active":
                self.counters.raised += 1
                self.counters.active += 1
                logger.warning("{}", describe(record))
            else:
                self.counters.resolved += 1
                self.counters.active = max(0, self.counters.active - 1)
                logger.info("{}", describe(record))
            self._write(record)
            if self.publish is not None:
                try:
                    self.publish(record)
                except Exception as exc:  # the bus must not stop the other outputs
                    logger.error("cannot publish the profile alert on the bus: {}", exc)
            if self.webhook:
                self._post(record)
        return records

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the webhook posts still in flight, at most ``timeout`` (default: two post timeouts,
        not one per queued post: a webhook that hangs must not hold a stopping collector for minutes)."""
        if self._posts:
            await asyncio.wait(set(self._posts), timeout=2 * self.timeout if timeout is None else timeout)

    def _write(self, record: dict[str, Any]) -> None:
        if self.alerts_file is None:
            return
        try:
            if self._stream is None:
                self._stream = RotatingFile(self.alerts_file, ALERTS_ROTATION, signal="alerts")
            self._stream.write(json.dumps(record, sort_keys=True) + "\n")  # one write: whole or nothing
        except OSError as exc:
            self.counters.file_failures += 1
            logger.error(
                "cannot append the profile alert to {}: {}; check the directory is writable",
                self.alerts_file,
                exc,
            )

    def close(self) -> None:
        """Close the alerts file (a later alert opens it again)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _post(self, record: dict[str, Any]) -> None:
        body = json.dumps(record).encode()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a script): post inline
            self._send(body)
            return
        if len(self._posts) >= MAX_WEBHOOK_POSTS:
            self._failed(f"{MAX_WEBHOOK_POSTS} posts already queued or in flight; this one dropped")
            return
        future = loop.run_in_executor(self._poster, self._send, body)
        self._posts.add(future)
        future.add_done_callback(self._posts.discard)

    def _send(self, body: bytes) -> None:
        assert self.webhook is not None
        request = urllib.request.Request(
            self.webhook, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
            self.counters.webhook_sent += 1
        except Exception as exc:  # URLError, OSError, http.client's BadStatusLine / IncompleteRead, ...
            self._failed(f"{type(exc).__name__}: {exc}")

    def _failed(self, why: str) -> None:
        self.counters.webhook_failures += 1
        now = time.monotonic()
        if now - self._last_failure_log >= _FAILURE_LOG_EVERY:
            self._last_failure_log = now
            with contextlib.suppress(Exception):
                logger.error(
                    "profile alert webhook {} failed ({} failure(s) so far): {}; alerts still go "
                    "to the file and the bus",
                    self.webhook,
                    self.counters.webhook_failures,
                    why,
                )
