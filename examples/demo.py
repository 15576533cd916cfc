"""Run the trading pipeline as five processes on one broker and report what happened.

``python -m examples.demo --seconds 20 --rate 2000`` (what ``make demo`` runs):

1. starts a broker (``python -m tickbus broker``) on Unix sockets in its log directory (every
   process is on this host; ``--transport tcp`` uses free loopback ports instead);
2. starts ``tickbus run --config <group>.toml`` for ui, strategy, model and feed, in that order
   (subscribers before their publishers), each waiting for its ready line;
3. watches the bus with its own hub for ``--seconds``: every decision's latency, each group's
   ``('$actors', 'stats', group)`` and the feed's status;
4. stops the feed, waits until the decisions stop coming (the drain), then stops the other groups
   in pipeline order and the broker;
5. prints a summary and exits non-zero if a message was lost (a gap) or a process failed;
6. prints one trace that crossed feed, model and strategy, and the command that shows it.

Tracing: the groups sample ``--trace-ratio`` of the ticks (``parentbased_traceidratio``, default
0.01) and write OTLP JSON spans into ``--data-dir``/traces (default ``./data`` in the repository,
git-ignored); ``tickbus trace list|show --data-dir DIR`` reads them.

``--realtime PRIORITY`` starts the broker and the groups under ``chrt --fifo PRIORITY`` (their
threads inherit it; this process stays in the normal class and the profiler at ``SCHED_IDLE``, its
default): what a trading server's units do with ``CPUSchedulingPolicy=fifo`` (deploy/README.md,
"Lower tail latency"). It needs root or CAP_SYS_NICE.

Child processes log to files in a temporary directory (printed, kept with ``--keep-logs`` or on
failure); on failure the tails of the logs are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import actors
import observability

from ._processes import DemoError, Processes, broker_endpoints, tail, tickbus_command
from ._profiling import READY_PREFIX, profiler_command, top_lines

GROUPS = {  # start order: every subscriber is up before its publisher starts
    "ui": "examples.pipeline:UI",
    "strategy": "examples.pipeline:Strategy",
    "model": "examples.pipeline:Model",
    "feed": "examples.pipeline:Feed",
}
STOP_ORDER = ("model", "strategy", "ui")  # after the feed, in pipeline order
PROGRESS_EVERY = 5.0


def percentile(ordered: Sequence[int], q: float) -> int:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of an ascending sequence."""
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def group_toml(name: str, target: str, config: Mapping[str, Any], frontend: str, backend: str) -> str:
    """A ``tickbus run --config`` file for one actor (JSON scalars and arrays are valid TOML)."""
    lines = [
        "[group]",
        f"name = {json.dumps(name)}",
        f"frontend = {json.dumps(frontend)}",
        f"backend = {json.dumps(backend)}",
        "drain_timeout = 5.0",
        "",
        "[[actor]]",
        f"class = {json.dumps(target)}",
        f"name = {json.dumps(name)}",
        "[actor.config]",
        *(f"{key} = {json.dumps(value)}" for key, value in config.items()),
    ]
    return "\n".join(lines) + "\n"


def write_configs(args: argparse.Namespace, workdir: Path, frontend: str, backend: str) -> dict[str, Path]:
    """Write one group file per actor into ``workdir``; return them in start order."""
    feed: dict[str, Any] = {"rate": args.rate, "symbols": args.symbols}
    if args.csv:
        feed = {"rate": args.rate, "csv": str(Path(args.csv).resolve())}
    paths = {}
    for name, target in GROUPS.items():
        paths[name] = workdir / f"{name}.toml"
        paths[name].write_text(group_toml(name, target, feed if name == "feed" else {}, frontend, backend))
    return paths


# -- watching the bus ---------------------------------------------------------------------------
class Monitor:
    """The demo's own subscriber: decision latencies, the latest stats of each group, the feed's
    status and the UI's snapshot."""

    def __init__(self) -> None:
        self.latencies: list[int] = []
        self.stats: dict[str, dict[str, Any]] = {}
        self.gone: dict[str, asyncio.Event] = {name: asyncio.Event() for name in GROUPS}
        self.feed: dict[str, Any] = {}
        self.snapshot: dict[str, Any] = {}
        self.broker: dict[str, Any] = {}
        self.broker_report = asyncio.Event()
        self.progress = asyncio.Event()

    def attach(self, hub: actors.Hub) -> None:
        """Subscribe to what the summary needs."""
        subscriber = actors.Subscriber(hub, "demo")
        subscriber.add_sync_listener(("decision", "*"), self.on_decision)
        subscriber.add_sync_listener(("$actors", "stats", "*"), self.on_stats)
        subscriber.add_sync_listener(("$actors", "bye", "*"), self.on_bye)
        subscriber.add_sync_listener(("feed", "status"), self.on_feed_status)
        subscriber.add_sync_listener(("ui", "snapshot"), self.on_snapshot)
        subscriber.add_sync_listener(("$broker", "stats"), self.on_broker_stats)

    def on_decision(self, key: actors.Key, decision: dict[str, Any]) -> None:
        self.latencies.append(decision["latency_ns"])
        self.progress.set()

    def on_stats(self, key: actors.Key, stats: dict[str, Any]) -> None:
        self.stats[key[2]] = stats

    def on_bye(self, key: actors.Key, payload: dict[str, Any]) -> None:
        # A group sends its final stats just before "bye", so they have arrived too.
        if key[2] in self.gone:
            self.gone[key[2]].set()

    def on_feed_status(self, key: actors.Key, status: dict[str, Any]) -> None:
        self.feed = status

    def on_snapshot(self, key: actors.Key, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot

    def on_broker_stats(self, key: actors.Key, stats: dict[str, Any]) -> None:
        self.broker = stats
        self.broker_report.set()

    async def wait_gone(self, name: str, timeout: float = 5.0) -> None:
        """Wait for a stopped group's goodbye (after its final stats); a crashed group never sends it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone[name].wait(), timeout)

    async def next_broker_report(self, timeout: float = 2.0) -> None:
        """Wait for the broker's next statistics, which count every message forwarded so far."""
        self.broker_report.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.broker_report.wait(), timeout)

    async def drain(self, expected: int, quiet: float = 1.0, timeout: float = 15.0) -> None:
        """Wait until ``expected`` decisions arrived, or none for ``quiet`` seconds, or ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(self.latencies) < expected:
                    self.progress.clear()
                    await asyncio.wait_for(self.progress.wait(), quiet)

    def progress_line(self, elapsed: float, since: int) -> str:
        """One line while the demo runs: decisions so far and the p99 latency since the last line."""
        window = sorted(self.latencies[since:])
        p99 = f"{percentile(window, 0.99) / 1e6:.2f} ms" if window else "-"
        return f"  t={elapsed:4.0f}s  decisions {len(self.latencies):>9,}  p99 {p99} (last {len(window):,})"


# -- the run ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What the summary reports."""

    monitor: Monitor
    demo_stats: dict[str, Any]
    codes: dict[str, int]
    seconds: float


async def run_pipeline(args: argparse.Namespace, processes: Processes) -> Outcome:
    """Start everything, run for ``args.seconds``, stop everything in order."""
    frontend, backend = broker_endpoints(processes.workdir, args.transport)
    broker_args = [sys.executable, "-m", "tickbus", "broker", "--frontend", frontend, "--backend", backend]
    broker_args += ["--stats-interval", "0.5"]
    realtime = realtime_prefix(args.realtime)
    broker_args = [*realtime, *broker_args]
    await processes.start("broker", broker_args, "tickbus broker ready")
    print(f"  broker ready: {frontend} -> {backend}")
    monitor = Monitor()
    hub = await actors.connect(frontend, backend, name="demo")
    try:
        monitor.attach(hub)
        await hub.sync()  # our subscriptions are in place before anything is published
        if args.profile_hz:
            profiler = profiler_command(frontend, backend, Path(args.data_dir), args.seconds, args.profile_hz)
            # before the groups: it hears every hello
            await processes.start("profiler", profiler, READY_PREFIX)
            print(f"  profiler ready (Austin at {args.profile_hz:g} Hz on every group as it starts)")
        for name, path in write_configs(args, processes.workdir, frontend, backend).items():
            await processes.start(
                name, [*realtime, *tickbus_command(), "run", "--config", str(path)], "tickbus run ready"
            )
            print(f"  {name} ready ({GROUPS[name]})")
        started = time.monotonic()
        await watch(processes, monitor, args.seconds)
        codes = {"feed": await processes["feed"].stop()}
        seconds = time.monotonic() - started
        await monitor.wait_gone("feed")
        await monitor.drain(int(monitor.feed.get("sent", 0)))
        for name in STOP_ORDER:
            codes[name] = await processes[name].stop()
            await monitor.wait_gone(name)
        if args.profile_hz:
            codes["profiler"] = await processes["profiler"].stop()
        await monitor.next_broker_report()
        demo_stats = {"group": "demo", "hub": _asdict(hub.statistics()), "actors": {}}
    finally:
        await hub.close()
    codes["broker"] = await processes["broker"].stop()
    return Outcome(monitor, demo_stats, codes, seconds)


def realtime_prefix(priority: int | None) -> list[str]:
    """``chrt --fifo PRIORITY`` (util-linux) before a child's command, or nothing."""
    if priority is None:
        return []
    chrt = shutil.which("chrt")
    if chrt is None:
        raise DemoError("--realtime needs chrt (Debian package util-linux)")
    return [chrt, "--fifo", str(priority)]


def _asdict(stats: actors.HubStatistics) -> dict[str, Any]:
    return {name: getattr(stats, name) for name in stats.__dataclass_fields__}


async def watch(processes: Processes, monitor: Monitor, seconds: float) -> None:
    """Let the pipeline run for ``seconds``, printing progress; raise if a process exits early."""
    exits = {asyncio.ensure_future(child.proc.wait()): child for child in processes.children.values()}
    loop = asyncio.get_running_loop()
    start = loop.time()
    mark = 0
    try:
        while (left := start + seconds - loop.time()) > 0:
            done, _ = await asyncio.wait(exits, timeout=min(PROGRESS_EVERY, left))
            if done:
                child = exits[done.pop()]
                raise DemoError(f"{child.name} exited early with code {child.code}; see {child.log_path}")
            if start + seconds - loop.time() > 1.0:  # the last stretch is in the summary
                print(monitor.progress_line(loop.time() - start, mark), flush=True)
                mark = len(monitor.latencies)
    finally:
        for waiter in exits:
            waiter.cancel()
        await asyncio.gather(*exits, return_exceptions=True)


# -- the summary --------------------------------------------------------------------------------
def summarize(outcome: Outcome) -> tuple[list[str], bool]:
    """The summary lines, and whether the run is a success (no gaps, every process exited 0)."""
    monitor = outcome.monitor
    groups = [monitor.stats.get(name, {}) for name in GROUPS]
    hubs = [g.get("hub", {}) for g in (*groups, outcome.demo_stats)]
    actor_stats = [a for g in groups for a in g.get("actors", {}).values()]

    def total(field: str) -> int:
        return sum(int(h.get(field, 0)) for h in hubs)

    gaps = total("gaps")
    drops = total("publish_dropped") + sum(int(a.get("dropped", 0)) for a in actor_stats)
    failures = sum(int(a.get("failures", 0)) for a in actor_stats)
    missing = [name for name in GROUPS if name not in monitor.stats]
    sent, elapsed = int(monitor.feed.get("sent", 0)), float(monitor.feed.get("elapsed_s", 0.0)) or 1.0
    latencies = sorted(monitor.latencies)
    ok = gaps == 0 and bool(latencies) and not missing and all(c == 0 for c in outcome.codes.values())

    def ms(q: float) -> str:
        return f"{percentile(latencies, q) / 1e6:.3f} ms" if latencies else "-"

    seconds = outcome.seconds
    positions = " ".join(
        f"{sym}:{row.get('pos', 0):+d}" for sym, row in monitor.snapshot.get("symbols", {}).items()
    )
    lines = [
        "",
        "tickbus demo summary",
        f"  duration             {seconds:.1f} s",
        f"  ticks published      {sent:,} ({sent / elapsed:,.0f}/s)",
        f"  broker messages      {total('published'):,} in, {total('received'):,} out "
        f"({total('received') / seconds:,.0f} msgs/s out)",
        f"  broker forwarded     {monitor.broker.get('messages_forwarded', 0):,} "
        "(its own count, from ('$broker', 'stats'))",
        f"  decisions received   {len(latencies):,}",
        f"  latency tick->decision  p50 {ms(0.5)}  p99 {ms(0.99)}  p99.9 {ms(0.999)}  max {ms(1.0)}",
        f"  gaps                 {gaps}",
        f"  duplicates           {total('duplicates')}",
        f"  drops                {drops}",
        f"  malformed            {total('malformed') + total('malformed_upstream')}",
        f"  handler failures     {failures}",
        f"  final positions      {positions or '-'}",
        "  exit codes           " + " ".join(f"{name}={code}" for name, code in outcome.codes.items()),
    ]
    if missing:
        lines.append(f"  no stats from        {', '.join(missing)}")
    lines.append(f"  result               {'OK' if ok else 'FAILED'}")
    return lines, ok


# -- entry point --------------------------------------------------------------------------------
async def main_async(args: argparse.Namespace, workdir: Path) -> int:
    """Run the demo; whatever happens, leave no child process behind."""
    processes = Processes(workdir)
    processes.env.update(trace_environment(args))
    since_ns = time.time_ns()
    since = time.time()
    try:
        outcome = await run_pipeline(args, processes)
    except (DemoError, actors.TickbusError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        _print_tails(workdir)
        return 1
    finally:
        await processes.kill_all()
    lines, ok = summarize(outcome)
    warned = log_warnings(workdir)
    lines.insert(-1, f"  warnings in logs     {len(warned)}" + "".join(f"\n    {w}" for w in warned[:5]))
    if warned and not args.allow_warnings:
        ok = False  # a clean run logs nothing that needs a look
        lines[-1] = "  result               FAILED (warnings in the logs; --allow-warnings to accept them)"
    profiles = (
        top_lines(Path(args.data_dir), list(GROUPS), since, hz=args.profile_hz) if args.profile_hz else []
    )
    print("\n".join([*lines, *trace_lines(args, since_ns), *profiles]))
    if not ok:
        _print_tails(workdir)
    return 0 if ok else 1


def trace_environment(args: argparse.Namespace) -> dict[str, str]:
    """What makes the groups trace ``--trace-ratio`` of the ticks into ``--data-dir``."""
    return {
        "TICKBUS_DATA_DIR": str(Path(args.data_dir).resolve()),
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": f"{args.trace_ratio:g}",
    }


def trace_lines(args: argparse.Namespace, since_ns: int) -> list[str]:
    """The summary's tracing lines: traces of this run through feed, model and strategy, and one to view."""
    data = Path(args.data_dir).resolve()
    through = ("feed", "model", "strategy")
    try:
        traces = observability.list_traces(data, services=through, since_ns=since_ns)
    except observability.TracingError as exc:
        return [f"  traces               none: {exc}"]
    if not traces:
        return [
            f"  traces               none through {', '.join(through)} in {data / 'traces'}; "
            f"raise --trace-ratio ({args.trace_ratio:g})"
        ]
    best = max(traces, key=lambda t: (t.spans, t.start_ns))  # a complete one, the latest of those
    return [
        f"  traces               {len(traces):,} through {', '.join(through)} "
        f"(ratio {args.trace_ratio:g}) in {data / 'traces'}",
        f"  example trace        {best.trace_id} ({best.spans} spans in {', '.join(best.services)})",
        f"  view it with         tickbus trace show {best.trace_id} --data-dir {data}",
    ]


def log_warnings(workdir: Path) -> list[str]:
    """The child processes' log records at WARNING or above (JSON lines or loguru's text form)."""
    found = []
    for path in sorted(workdir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if any(
                f'"level": "{lv}"' in line or f"| {lv}" in line for lv in ("WARNING", "ERROR", "CRITICAL")
            ):
                found.append(f"{path.stem}: {line[:200]}")
    return found


def _print_tails(workdir: Path) -> None:
    for path in sorted(workdir.glob("*.log")):
        print(f"\n--- {path} (tail) ---\n{tail(path)}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The demo's command line."""
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the feed runs (20)")
    parser.add_argument("--rate", type=float, default=2000.0, help="ticks per second over all symbols")
    parser.add_argument("--symbols", type=int, default=8, help="number of synthetic symbols (8)")
    parser.add_argument("--csv", help="replay this symbol,price,size file instead of the random walk")
    parser.add_argument("--keep-logs", action="store_true", help="keep the log directory afterwards")
    parser.add_argument(
        "--allow-warnings",
        action="store_true",
        help="do not fail on WARNING or ERROR lines in the logs (a loaded machine may log slow callbacks)",
    )
    parser.add_argument(
        "--trace-ratio", type=float, default=0.01, help="share of ticks traced end to end (0.01)"
    )
    parser.add_argument(
        "--realtime",
        type=int,
        metavar="PRIORITY",
        choices=range(1, 100),
        help="run the broker and the groups at SCHED_FIFO PRIORITY (1-99; needs root or CAP_SYS_NICE)",
    )
    parser.add_argument(
        "--profile-hz",
        type=float,
        default=100.0,
        help="Austin's sampling rate on every group (100, the profiler's default); 0 runs no profiler",
    )
    parser.add_argument(
        "--transport",
        choices=("ipc", "tcp"),
        default="ipc",
        help="how every process reaches the broker: Unix sockets (ipc, one host) or loopback tcp",
    )
    parser.add_argument(
        "--data-dir",
        default=str(Path(__file__).resolve().parent.parent / "data"),
        help="where the groups write traces and metrics (./data in the repository)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.profile_hz <= 10_000:
        parser.error(f"--profile-hz {args.profile_hz:g}: give 0 (no profiler) to 10000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m examples.demo``."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tickbus-demo-"))
    print(f"tickbus demo: {args.seconds:g} s at {args.rate:g} ticks/s; logs in {workdir}")
    print(f"  tracing {args.trace_ratio:g} of the ticks into {Path(args.data_dir).resolve()}")
    if args.realtime is not None:
        print(f"  broker and groups at SCHED_FIFO priority {args.realtime} (chrt --fifo)")
    code = 1
    try:
        code = asyncio.run(main_async(args, workdir))
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        code = 130
    finally:
        if args.keep_logs or code != 0:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
