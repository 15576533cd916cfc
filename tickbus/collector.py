"""The continuous profiling collector (``tickbus profiler``): Austin on every actor process of a host.

It subscribes to ``('$actors', '*')`` on the broker, attaches one :class:`AustinSampler` to each
``tickbus run`` process that announces itself from this host (plus ``--pid`` targets), folds the
samples into windows (:mod:`observability.profiling._windows`) labelled with the announcement and the actors'
``handled`` counters, and stores them in ``profiles.sqlite`` (:mod:`observability.profiling._store`).

Targets come and go on their own: a sampler that ends because its process exited retires the target
(a restarted group announces a new pid and gets a new sampler); a sampler that dies while its process
still runs is restarted after 1, 2, 4 ... 60 s. Austin only reads the targets' memory: they are never
stopped or signalled. Each of these events is one log line.

The bus is needed to discover processes, not to profile them: with ``--pid`` targets and no broker
reachable, the collector says so in one INFO line and profiles those pids alone (windows to the
store, alerts to the alerts file and the log, nothing on the bus).

Each stored window also goes to the regression detector (:mod:`observability.profiling._regression`), seeded
from the store with a group's recent windows the first time the group is seen; what it finds goes to
the alerts file, the log, the bus (``('$alerts', 'profile', <actor>)``), the webhook and the metrics
(:mod:`observability.profiling._alerts`). That side is :mod:`tickbus._stored_windows`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

import actors
from broker import ACTORS, ALERTS_PROFILE
from observability import (
    ConnectError,
    PtraceNotPermittedError,
    RateLimitedLog,
    SamplerError,
)
from observability.profiling import (
    DEFAULT_INTERVAL_US,
    DEFAULT_WINDOW,
    AlertDispatcher,
    AustinSample,
    AustinSampler,
    DetectionConfig,
    Mode,
    ProfileStore,
    Regression,
    RegressionDetector,
    Target,
    TargetTable,
    austin_binary,
    backoff_delay,
    default_store_path,
)

from ._stored_windows import StoredWindows

__all__ = ["Profiler", "ProfilerConfig", "ProfilerStatistics", "own_process", "pid_alive"]

_HEALTHY_RUN = 60.0  # a sampler that ran this long starts its backoff afresh after dying
_BUS_WAIT = 2.0  # seconds to wait for the broker when --pid targets can be profiled without it
_STORE_CHECK_S = 5.0  # seconds between two looks at whether the store's file is still there


@dataclass(frozen=True)
class ProfilerConfig:
    """Options of ``tickbus profiler``; ``None`` endpoints mean ``$TICKBUS_FRONTEND`` / the defaults."""

    frontend: str | None = None
    backend: str | None = None
    window: float = DEFAULT_WINDOW
    interval_us: int = DEFAULT_INTERVAL_US
    mode: Mode = "cpu"
    pids: tuple[int, ...] = ()
    data_dir: Path | None = None
    host: str = field(default_factory=socket.gethostname)
    retention_every: float = 600.0
    backoff_cap: float = 60.0
    detect: bool = True
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    alerts_file: Path | None = None  # None: <data dir>/alerts.jsonl
    webhook: str | None = None


@dataclass(frozen=True, slots=True)
class ProfilerStatistics:
    """Counters of a :class:`Profiler`."""

    targets: int
    samplers_running: int
    samples: int
    windows_stored: int
    sampler_starts: int
    sampler_failures: int
    evaluations: int
    alerts_active: int
    internal_errors: int = 0  # a turn of housekeeping or a sample that raised (logged, then skipped)
    announcements_refused: int = 0  # hellos not taken: bad names, table full, not our user's process
    windows_lost: int = 0  # windows the store could not take (a full disk, a read-only directory)


def own_process(pid: int) -> str | None:
    """None when ``pid`` runs as this process's user, the only processes an announcement may make
    the collector sample (under its unit it holds CAP_SYS_PTRACE: it could read anyone's stacks);
    else why not. ``--pid`` targets are the operator's choice and are not checked."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
                    break
            else:
                return "has no Uid line in /proc"
    except FileNotFoundError:
        return "is not running"
    except (OSError, ValueError, IndexError) as exc:
        return f"cannot be checked ({type(exc).__name__})"
    if uid != os.getuid():
        return f"runs as uid {uid}, not the collector's {os.getuid()}"
    return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class Profiler(StoredWindows):
    """The collector: ``await Profiler(config).run(stop)`` until ``stop`` is set."""

    config: ProfilerConfig

    def __init__(self, config: ProfilerConfig, *, store: ProfileStore | None = None) -> None:
        self.config = config
        self.store = store or ProfileStore(default_store_path(config.data_dir))
        self.targets = TargetTable(config.host, window=config.window, accept=own_process)
        self._samplers: dict[int, AustinSampler] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._ptrace_reported = False
        self._samples = 0
        self._stored = self._lost = 0
        self._starts = 0
        self._failures = 0
        self._internal_errors = 0
        self._log = RateLimitedLog(30.0)
        self.detector = RegressionDetector(config.detection)
        self._seeded: set[tuple[str, str]] = set()
        self._told: dict[tuple[str, str], bool] = {}  # group -> readiness logged (False: waiting)
        alerts_file = config.alerts_file or self.store.path.with_name("alerts.jsonl")
        self.alerts = AlertDispatcher(alerts_file, webhook=config.webhook)
        self.on_alert: Callable[[Regression], None] | None = None  # tests watch alerts here

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Connect, discover, sample and store until ``stop`` is set; then store the partial windows."""
        try:
            austin_binary()  # no Austin at all is a setup error, not something to retry
            hub = await self._connect()
        except BaseException:
            self.store.close()
            raise
        ticker: asyncio.Task[None] | None = None
        try:
            if hub is not None:
                bus = hub

                def publish(record: dict[str, Any]) -> None:
                    bus.publish(actors.Key(*ALERTS_PROFILE, record["actor"]), record)

                self.alerts.publish = publish
                subscriber = actors.Subscriber(hub, "profiler")
                subscriber.add_sync_listener(actors.Key(ACTORS, "*"), self._on_announcement)
                await hub.sync()
            now = time.time()
            for pid in self.config.pids:
                target = self.targets.add_pid(pid, now)
                logger.info("profiling pid {} by hand (--pid)", pid)
                self._start(target)
            ticker = asyncio.get_running_loop().create_task(self._tick(), name="profiler-ticker")
            logger.info(
                "profiler on host {} storing {}s windows in {} (Austin every {} µs, {} mode)",
                self.config.host,
                self.config.window,
                self.store.path,
                self.config.interval_us,
                self.config.mode,
            )
            if on_ready is not None:
                on_ready()
            await stop.wait()
        finally:
            self._stopping.set()
            for sampler in self._samplers.values():
                sampler.stop()
            if ticker is not None:
                ticker.cancel()
            await asyncio.gather(*self._tasks.values(), *([ticker] if ticker else []), return_exceptions=True)
            try:
                self._save(self.targets.flush_all(time.time()))
                await self.alerts.drain()
            finally:  # whatever the last windows did, the files and the bus are let go
                self.alerts.close()
                try:
                    if hub is not None:
                        await hub.close()
                finally:
                    self.store.close()

    async def _connect(self) -> actors.RemoteHub | None:
        """The bus, or ``None`` when it is unreachable and ``--pid`` targets need no discovery."""
        if not self.config.pids:
            return await actors.connect(self.config.frontend, self.config.backend, name="profiler")
        try:
            return await actors.connect(
                self.config.frontend, self.config.backend, name="profiler", wait=_BUS_WAIT
            )
        except ConnectError as exc:
            logger.info(
                "bus not reachable ({}); profiling pid(s) {} without it: no discovery, alerts only in "
                "the log and {}",
                exc,
                ", ".join(map(str, self.config.pids)),
                self.alerts.alerts_file,
            )
            return None

    def statistics(self) -> ProfilerStatistics:
        """A snapshot of the collector's counters."""
        return ProfilerStatistics(
            targets=len(self.targets),
            samplers_running=sum(1 for s in self._samplers.values() if s.statistics().running),
            samples=self._samples,
            windows_stored=self._stored,
            sampler_starts=self._starts,
            sampler_failures=self._failures,
            evaluations=self.detector.evaluations,
            alerts_active=len(self.detector.active()),
            internal_errors=self._internal_errors,
            announcements_refused=sum(self.targets.refused.values()),
            windows_lost=self._lost,
        )

    def sampler(self, pid: int) -> AustinSampler | None:
        """The current sampler of ``pid``, if one runs (tests kill its Austin to check restarts)."""
        return self._samplers.get(pid)

    def _on_announcement(self, key: actors.Key, payload: Any) -> None:
        kind, now = key[1] if len(key) > 1 else "", time.time()
        if kind == "stats":
            self._save(self.targets.stats(payload, now))
        elif kind == "hello":
            refused = sum(self.targets.refused.values())
            found = self.targets.hello(payload, now)
            if sum(self.targets.refused.values()) != refused:
                self._log.warning(
                    "refused", "profiler: ignored an announcement: {}", self.targets.last_refusal
                )
            if found is not None and not self._stopping.is_set():
                target = found.target
                if found.previous_pid is not None:
                    logger.info(
                        "group {} restarted: pid {} -> {}",
                        target.labels.group,
                        found.previous_pid,
                        target.pid,
                    )
                else:
                    logger.info("discovered {} actors {}", target.describe(), list(target.labels.actors))
                self._start(target)
        elif kind == "bye":
            leaving = self.targets.bye(payload)
            if leaving is not None:
                logger.info("{} said bye", leaving.describe())

    def _start(self, target: Target) -> None:
        pid = target.pid
        self._tasks[pid] = asyncio.get_running_loop().create_task(
            self._sample(target), name=f"profiler-pid-{pid}"
        )

    async def _sample(self, target: Target) -> None:
        pid = target.pid
        reason = "stopped"
        try:
            while not self._stopping.is_set():
                if not pid_alive(pid):
                    reason = "said bye and exited" if target.said_bye else "exited"
                    break
                started = time.monotonic()
                failure = await self._run_sampler(target)
                if self._stopping.is_set():
                    break
                if not pid_alive(pid):
                    reason = "said bye and exited" if target.said_bye else "exited"
                    break
                self._failures += 1
                if time.monotonic() - started >= _HEALTHY_RUN:
                    target.failures = 0
                target.failures += 1
                delay = backoff_delay(target.failures, cap=self.config.backoff_cap)
                logger.warning(
                    "sampler of {} failed ({} in a row): {}; restarting in {:.0f}s",
                    target.describe(),
                    target.failures,
                    failure,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        except Exception:  # a bug here must not take the other targets down
            logger.exception("profiling {} failed unexpectedly; dropping it", target.describe())
            reason = "dropped after an internal error"
        finally:
            self._tasks.pop(pid, None)
        if reason != "stopped":
            self._save(self.targets.remove(pid, time.time()))
            logger.info("{} {}; stopped profiling it", target.describe(), reason)

    async def _run_sampler(self, target: Target) -> str:
        """Run one Austin on ``target`` until it ends; returns why it ended."""
        pid = target.pid
        sampler = AustinSampler(pid, interval_us=self.config.interval_us, mode=self.config.mode)
        self._samplers[pid] = sampler
        self._starts += 1
        ready = asyncio.get_running_loop().create_task(self._report_attach(target, sampler))
        try:
            await sampler.run(self._on_sample(target))
            return "Austin exited while the process still runs"
        except PtraceNotPermittedError as exc:
            if not self._ptrace_reported:
                self._ptrace_reported = True
                logger.error("cannot profile {}: {}", target.describe(), exc)
            return str(exc)
        except SamplerError as exc:
            return str(exc)
        except Exception as exc:  # a bug on the sample path: restart with backoff, not drop
            self._internal_error("sampler", exc)
            return f"internal error {type(exc).__name__}: {exc}"
        finally:
            ready.cancel()
            self._samplers.pop(pid, None)

    async def _report_attach(self, target: Target, sampler: AustinSampler) -> None:
        await sampler.wait_ready()
        stats = sampler.statistics()
        logger.info(
            "attached Austin {} (pid {}) to {} running Python {}",
            stats.austin_version,
            stats.austin_pid,
            target.describe(),
            stats.python_version,
        )

    def _on_sample(self, target: Target) -> Callable[[AustinSample], None]:
        folder = target.folder

        def on_sample(sample: AustinSample) -> None:
            self._samples += 1
            try:
                closed = folder.add(sample, time.time())
                if closed:
                    self._save(closed)
            except Exception as exc:  # one odd sample (or a bug) costs that sample, not the sampler
                self._internal_error("sample", exc)

        return on_sample

    async def _tick(self) -> None:
        period = min(1.0, self.config.window / 4)
        next_retention = next_check = time.monotonic()
        while True:
            try:
                if time.monotonic() >= next_check:  # before windows are written to a file nobody sees
                    next_check = time.monotonic() + _STORE_CHECK_S
                    self._check_store()
                self._save(self.targets.tick(time.time()))
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self.config.retention_every
                    self._retain()
            except Exception as exc:  # the ticker closes windows and bounds the store: it must not end
                self._internal_error("tick", exc)
            await asyncio.sleep(period)

    def _internal_error(self, where: str, exc: Exception) -> None:
        self._internal_errors += 1
        self._log.log(
            "ERROR",
            where,
            "profiler: unexpected {} in its {} path; carrying on",
            type(exc).__name__,
            where,
            exception=exc,
        )
