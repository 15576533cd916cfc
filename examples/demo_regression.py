"""``make demo-regression``: a model gets 25 % slower in one function; the profiler says so.

``python -m examples.demo_regression [--warmup 34] [--factor 1.25]``:

1. starts a broker, the profiling collector (``tickbus profiler``, 2 s windows, Austin at 2.5 kHz so
   that a short demo has enough samples), and two groups: the pipeline's feed and ``RiskModel``
   (:mod:`examples.regression_model`), whose tick handler calls ``risk_estimate`` and
   ``signal_strength``;
2. after ``--warmup`` seconds (the baseline) makes ``risk_estimate`` ``--factor`` times as costly
   with a ``('control', 'slow')`` message;
3. waits for the alert on ``('$alerts', 'profile', 'model')`` and prints it, then writes the HTML
   report (``tickbus profile report``) comparing the windows before and after and prints its path;
4. stops everything. Exit code 0 when the alert named ``risk_estimate``.

Logs and the profile store stay in a temporary directory (printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import actors
from actors.testing import free_tcp_port

from ._processes import DemoError, Processes, tickbus_command
from ._profiling import READY_PREFIX
from .demo import group_toml

WINDOW = 2.0
INTERVAL_US = 400


async def run(args: argparse.Namespace, processes: Processes) -> int:
    """The demo's steps; see the module docstring."""
    workdir = processes.workdir
    frontend, backend = f"tcp://127.0.0.1:{free_tcp_port()}", f"tcp://127.0.0.1:{free_tcp_port()}"
    await processes.start(
        "broker",
        [sys.executable, "-m", "tickbus", "broker", "--frontend", frontend, "--backend", backend],
        "tickbus broker ready",
    )
    profiler = [*tickbus_command(), "profiler", "--frontend", frontend, "--backend", backend]
    profiler += ["--window", f"{WINDOW:g}", "--interval-us", str(INTERVAL_US), "--data-dir", str(workdir)]
    await processes.start("profiler", profiler, READY_PREFIX)
    print(f"  profiler ready: {WINDOW:g} s windows, Austin every {INTERVAL_US} µs, store in {workdir}")
    alerts: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    hub = await actors.connect(frontend, backend, name="demo-regression")
    try:
        actors.Subscriber(hub, "alerts").add_sync_listener(
            ("$alerts", "profile", "*"), lambda key, payload: alerts.put_nowait(payload)
        )
        await hub.sync()
        groups = {
            "model": ("examples.regression_model:RiskModel", {}),
            "feed": ("examples.pipeline:Feed", {"rate": args.rate, "symbols": 8}),
        }
        for name, (target, config) in groups.items():
            path = workdir / f"{name}.toml"
            path.write_text(group_toml(name, target, config, frontend, backend))
            await processes.start(
                name, [*tickbus_command(), "run", "--config", str(path)], "tickbus run ready"
            )
            print(f"  {name} ready ({target})")
        print(f"  warming up for {args.warmup:g} s (the baseline) ...", flush=True)
        await asyncio.sleep(args.warmup)
        while not alerts.empty():  # the detector is not perfect: say so
            early = alerts.get_nowait()
            print(f"  (an alert during the warm-up: {early['state']} {early['function']['name']})")
        slowed_at = time.time()
        hub.publish(actors.Key("control", "slow"), {"function": "risk_estimate", "factor": args.factor})
        print(
            f"  made RiskModel.risk_estimate {args.factor - 1:.0%} costlier; waiting for the alert ...",
            flush=True,
        )
        try:
            async with asyncio.timeout(args.timeout):
                while (alert := await alerts.get())["function"]["name"] != "RiskModel.risk_estimate":
                    print(f"  (another alert: {alert['state']} {alert['function']['name']})")
        except TimeoutError:
            print(f"  no alert naming RiskModel.risk_estimate within {args.timeout:g} s", file=sys.stderr)
            return 1
        after = time.time() - slowed_at
        print(f"\n  alert after {after:.1f} s on ('$alerts', 'profile', {alert['actor']!r}):")
        print("  " + json.dumps(alert, indent=2).replace("\n", "\n  "))
    finally:
        await hub.close()
    for name in ("feed", "model", "profiler"):
        await processes[name].stop()
    await processes["broker"].stop()
    report = workdir / "report.html"
    command = [*tickbus_command(), "profile", "report", "--actor", "model", "--data-dir", str(workdir)]
    command += ["--before", "0", f"{slowed_at:.3f}", "--after", f"{slowed_at:.3f}", f"{time.time():.3f}"]
    command += ["-o", str(report)]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"  report failed: {result.stderr.strip()}", file=sys.stderr)
        return 1
    print(f"\n  alerts file   {workdir / 'alerts.jsonl'}")
    print(f"  report        {report}   (a differential flame graph; open it in a browser)")
    print(f"  diff          tickbus profile diff --actor model --data-dir {workdir}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo_regression", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--warmup", type=float, default=34.0, help="seconds before the slowdown (34)")
    parser.add_argument("--factor", type=float, default=1.25, help="how much costlier (1.25)")
    parser.add_argument("--rate", type=float, default=2000.0, help="ticks per second (2000)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the alert (60)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m examples.demo_regression``."""
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tickbus-demo-regression-"))
    print(f"tickbus demo-regression: files in {workdir}")
    processes = Processes(workdir)

    async def main_async() -> int:
        try:
            return await run(args, processes)
        except (DemoError, actors.TickbusError) as exc:
            print(f"demo-regression failed: {exc}", file=sys.stderr)
            return 1
        finally:
            await processes.kill_all()

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(main_async())
    return 130


if __name__ == "__main__":
    sys.exit(main())
