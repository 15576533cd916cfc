"""``tickbus profiler`` (the collector) and ``tickbus profile windows|top`` (queries of its store).

``tickbus profiler --pid PID`` needs no broker: without one it profiles the pids alone.

``tickbus profiler`` prints one line to stdout once it is subscribed, ``tickbus profiler ready
host=<host> store=<path>``, and logs to stderr; SIGTERM/SIGINT store the partial windows and exit 0.

This module is imported by every ``tickbus`` invocation to build the parser: it imports nothing heavy
at module level.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

READY_PREFIX = "tickbus profiler ready"


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``profiler`` and ``profile`` to the ``tickbus`` command."""
    collector = subparsers.add_parser(
        "profiler",
        help="profile every actor process of this host continuously with Austin",
        description="Discover the actor processes of this host from their ('$actors', 'hello', group) "
        "announcements, sample each with Austin (ptrace access needed) and store windows of collapsed "
        "stacks in <data-dir>/profiles.sqlite. SIGTERM/SIGINT stop it with exit code 0.",
    )
    collector.add_argument(
        "--frontend", help="broker frontend URL (default $TICKBUS_FRONTEND or tcp://127.0.0.1:5550)"
    )
    collector.add_argument(
        "--backend", help="broker backend URL (default $TICKBUS_BACKEND or tcp://127.0.0.1:5551)"
    )
    collector.add_argument(
        "--window",
        type=float,
        default=20.0,  # observability.profiling.DEFAULT_WINDOW (not imported here: it loads austin-python)
        metavar="SECONDS",
        help="window length (default %(default)s)",
    )
    collector.add_argument(
        "--interval-us",
        type=int,
        default=10_000,
        metavar="US",
        help="Austin's sampling interval in microseconds (default %(default)s, i.e. 100 Hz)",
    )
    collector.add_argument(
        "--mode", choices=("cpu", "wall"), default="cpu", help="sample CPU time or wall time (default cpu)"
    )
    collector.add_argument(
        "--pid",
        type=int,
        action="append",
        default=[],
        help="also profile this process; repeatable; works without a broker (then only these pids)",
    )
    collector.add_argument(
        "--config", metavar="FILE", help="TOML file with a [profiler] table; flags and $TICKBUS_* override it"
    )
    _add_data_dir(collector)
    collector.add_argument(
        "--alerts-file", type=Path, help="JSON lines of regression alerts (default <data-dir>/alerts.jsonl)"
    )
    collector.add_argument("--webhook", metavar="URL", help="also POST each alert as JSON to this URL")
    collector.add_argument("--no-detect", action="store_true", help="store windows only, detect nothing")
    collector.add_argument(
        "--scheduling",
        choices=("idle", "normal"),
        default="idle",
        help="idle (default): the collector and its Austin samplers run at SCHED_IDLE, only on CPU "
        "time the actors leave, so their bursts never delay an actor (at nice 19 while its CPUs stay "
        "saturated); normal: the usual class",
    )

    query = subparsers.add_parser("profile", help="query the profiles stored by `tickbus profiler`")
    queries = query.add_subparsers(dest="profile_command", required=True, metavar="QUERY")
    windows = queries.add_parser("windows", help="list stored windows, newest last")
    top = queries.add_parser("top", help="top functions by self and inclusive share over the last windows")
    for sub, last in ((windows, 20), (top, 10)):
        sub.add_argument("--actor", help="only windows of this group or actor name")
        sub.add_argument(
            "--last", type=int, default=last, metavar="N", help="last N windows (default %(default)s)"
        )
        sub.add_argument(
            "--hourly", action="store_true", help="use the hourly roll-ups instead of raw windows"
        )
        _add_data_dir(sub)
    top.add_argument(
        "--limit", type=int, default=20, metavar="N", help="functions to show (default %(default)s)"
    )
    top.add_argument(
        "--by", choices=("self", "inclusive"), default="self", help="order by this share (default self)"
    )
    from ._profile_cli import add_view_parsers

    add_view_parsers(queries, _add_data_dir)


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="directory of profiles.sqlite (default $TICKBUS_DATA_DIR, else $XDG_STATE_HOME/tickbus)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``tickbus profiler`` or ``tickbus profile ...``; the exit code."""
    if args.command == "profiler":
        return _run_collector(args)
    if args.profile_command not in ("windows", "top"):
        from ._profile_cli import run_view

        return run_view(args)
    from observability.profiling import ProfileStore, default_store_path

    with ProfileStore(default_store_path(args.data_dir), create=False) as store:
        summaries = store.summaries(
            actor=args.actor, resolution="hour" if args.hourly else "raw", last=max(1, args.last)
        )
        if not summaries:
            who = f" of {args.actor!r}" if args.actor else ""
            print(f"no windows{who} in {store.path}", file=sys.stderr)
            return 1
        windows = store.load([s.id for s in summaries])
    from observability.profiling import format_top, format_windows

    if args.profile_command == "windows":
        print(format_windows(summaries, windows))
    else:
        from observability.profiling import merge_windows

        groups = sorted({s.group for s in summaries})
        print(format_top(merge_windows(windows), len(windows), groups=groups, limit=args.limit, by=args.by))
    return 0


class _AustinReapedFirst:
    """A filter of asyncio's log: "Unknown child process pid N, will report returncode 255" becomes a
    DEBUG line. This process's only children are its Austin samplers; when one exits on its own (a pid
    that is not Python, a target gone), terminating it (austin-python's cleanup, ours) polls it first
    (``subprocess.Popen.send_signal``) and so reaps it before asyncio's watcher thread, which then
    warns. The sampler's failure is logged, with Austin's own words, by the sampler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Unknown child process pid %d, will report returncode 255":
            return True
        from loguru import logger

        logger.debug(
            "Austin pid {} was reaped by its terminate before asyncio's watcher", *record.args or ("?",)
        )
        return False


def _report_failure(task: asyncio.Task[None]) -> None:
    """A background task of the collector must not end in silence."""
    if not task.cancelled() and task.exception() is not None:
        from loguru import logger

        logger.opt(exception=task.exception()).error("profiler: {} failed", task.get_name())


def _run_collector(args: argparse.Namespace) -> int:
    from loguru import logger

    from observability import announce, child_processes, configure_logging, idle_scheduling, low_scheduling
    from observability.profiling import ProfileStore, default_store_path

    from ._service_config import apply_command_config
    from .collector import Profiler, ProfilerConfig

    args = apply_command_config(args, "profiler", add_parsers)  # --config FILE's [profiler], then $TICKBUS_*
    config = ProfilerConfig(
        frontend=args.frontend,
        backend=args.backend,
        window=args.window,
        interval_us=args.interval_us,
        mode=args.mode,
        pids=tuple(args.pid),
        data_dir=args.data_dir,
        detect=not getattr(args, "no_detect", False),
        alerts_file=getattr(args, "alerts_file", None),
        webhook=getattr(args, "webhook", None),
    )
    if config.window <= 0 or config.interval_us <= 0:
        from observability import ProfilerError

        raise ProfilerError(
            f"--window {config.window} and --interval-us {config.interval_us} must both be positive"
        )
    idle = getattr(args, "scheduling", "idle") == "idle"
    if idle:  # it starts at nice 19, before any thread or Austin (they inherit it); at SCHED_IDLE once ready
        low_scheduling()
    configure_logging("profiler")
    logging.getLogger("asyncio").addFilter(_AustinReapedFirst())
    store = ProfileStore(default_store_path(config.data_dir))

    def lower() -> bool:
        """SCHED_IDLE for the collector and the samplers started so far; False where there is none."""
        try:
            idle_scheduling(child_processes())
        except OSError as exc:
            logger.warning("profiler runs in the normal scheduling class at nice 19: {}", exc)
            return False
        logger.info(
            "profiler runs at SCHED_IDLE: only on CPU time the actors leave (scheduling = normal to change)"
        )
        return True

    async def main() -> None:
        from observability import notify_service

        from ._scheduling import keep_from_starving

        stop = asyncio.Event()
        # SIGTERM/SIGINT: STOPPING=1, then stop; WATCHDOG=1 from this loop (no-ops outside systemd)
        notifier, feeder = notify_service(asyncio.get_running_loop(), stop)
        guard: asyncio.Task[None] | None = None

        def ready() -> None:
            nonlocal guard
            if idle and lower():  # a starved collector goes back to nice 19 (tickbus/_scheduling.py)
                guard = asyncio.get_running_loop().create_task(keep_from_starving(stop), name="scheduling")
                guard.add_done_callback(_report_failure)
            announce(f"{READY_PREFIX} host={config.host} store={store.path}")  # one write, a thread
            notifier.ready(f"{READY_PREFIX} host={config.host} store={store.path}")

        from observability import metrics

        metrics_dir = config.data_dir / "metrics" / "profiler.jsonl" if config.data_dir else None
        metrics.enable("profiler", otlp_file=metrics_dir)  # alerts raised/active, process CPU
        try:
            await Profiler(config, store=store).run(stop, on_ready=ready)
        finally:
            feeder.cancel()
            if guard is not None:
                guard.cancel()
            metrics.disable()

    asyncio.run(main())
    return 0
