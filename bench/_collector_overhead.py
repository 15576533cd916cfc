"""The profiling collector's cost to its target: throughput with Austin attached vs not, same run.

``python -m bench._collector_overhead [--rounds 8] [--phase 5] [--interval-us 10000]``

One broker and one CPU-bound target actor process (``tickbus run``): its ``run()`` handles work
items of ~60 µs of arithmetic as fast as it can, yielding to its event loop every 20 items, and
publishes its count on ``('bench', 'units')`` every 0.5 s (a message-driven target would measure the
bus, not the profiler: here the target's CPU is the only limit). Phases alternate: collector off,
collector on (``tickbus profiler --pid <target>``, default 100 Hz, CPU mode), ``--rounds`` times. The
target's throughput in a phase is its count's growth over the phase; the first second is left out.
The collector's CPU is its own plus its Austin child's (``/proc/<pid>/stat``), per second of phase,
per target (one here).

Prints one line per phase and a summary; ``--json PATH`` writes the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import actors
from actors import Actor, Key
from actors.testing import ActorProcess, BrokerProcess, wait_for_line

READY = "tickbus profiler ready"


class Target(Actor):
    """A CPU-bound actor: handles its own work items (~60 µs of arithmetic each) as fast as it can,
    yielding to the loop after each batch, and publishes how many it handled every 0.5 s."""

    name = "target"

    async def on_start(self) -> None:
        self.total = 0
        self.units = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        report = loop.time() + 0.5
        while True:
            for _ in range(20):
                self.work(3)
            self.units += 20
            if loop.time() >= report:
                report += 0.5
                self.publish(("bench", "units"), self.units)
            await asyncio.sleep(0)

    def work(self, payload: int) -> None:
        """One work item."""
        for i in range(1_500):
            self.total += i * payload


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its children that it waited for, in seconds (0 when gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Austin under the collector)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class Meter:
    """The target's work counter as published, with the times it arrived."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []

    def on_units(self, key: Key, payload: Any) -> None:
        if isinstance(payload, int):
            self.points.append((time.monotonic(), payload))

    def rate(self, t0: float, t1: float) -> float:
        inside = [(t, n) for t, n in self.points if t0 <= t <= t1]
        if len(inside) < 2:
            return float("nan")
        (ta, na), (tb, nb) = inside[0], inside[-1]
        return (nb - na) / (tb - ta)

    def latest(self) -> int:
        return self.points[-1][1] if self.points else 0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate off/on phases; the summary."""
    rows: list[dict[str, Any]] = []
    with BrokerProcess.start() as broker:
        target = ActorProcess.launch(broker, "bench._collector_overhead:Target", name="target")
        hub = await actors.connect(broker.frontend, broker.backend, name="bench-driver")
        meter = Meter()
        actors.Subscriber(hub, "meter").add_sync_listener(("bench", "units"), meter.on_units)
        await hub.sync()
        try:
            await asyncio.sleep(2.0)  # warm-up
            for _ in range(args.rounds):
                for attached in (False, True):
                    rows.append(await phase(args, broker, target.proc.pid, meter, attached))
                    row = rows[-1]
                    cpu = f", collector CPU {row['collector_cpu']:.1%} of a core" if attached else ""
                    print(
                        f"  collector {'on ' if attached else 'off'}: {row['rate']:,.0f} items/s{cpu}",
                        flush=True,
                    )
        finally:
            await hub.close()
            target.close()
    off = [r["rate"] for r in rows if not r["attached"]]
    on = [r["rate"] for r in rows if r["attached"]]
    cpu = [r["collector_cpu"] for r in rows if r["attached"]]
    summary = {
        "interval_us": args.interval_us,
        "rate_off": statistics.median(off),
        "rate_on": statistics.median(on),
        "ratio": statistics.median(b / a for a, b in zip(off, on, strict=True)),  # paired: same round
        "collector_cpu_per_target": statistics.median(cpu),
        "phases": rows,
    }
    off_rate, on_rate, ratio = summary["rate_off"], summary["rate_on"], summary["ratio"]
    print(
        f"collector overhead: target {off_rate:,.0f} items/s without, {on_rate:,.0f} with Austin attached "
        f"every {args.interval_us} µs: {ratio:.3f}x ({1 - ratio:.1%} loss); collector CPU per target "
        f"{summary['collector_cpu_per_target']:.1%} of a core (medians of {args.rounds} rounds; the ratio "
        "is the median of each round's on/off)"
    )
    return summary


async def phase(
    args: argparse.Namespace, broker: BrokerProcess, pid: int, meter: Meter, attached: bool
) -> dict[str, Any]:
    """One phase: start the collector if ``attached``, measure, stop it."""
    collector: subprocess.Popen[str] | None = None
    data = Path(args.data_dir)
    if attached:
        command = [
            sys.executable,
            "-m",
            "tickbus",
            "profiler",
            "--pid",
            str(pid),
            "--data-dir",
            str(data),
        ]
        command += ["--frontend", broker.frontend, "--backend", broker.backend, "--no-detect"]
        command += ["--interval-us", str(args.interval_us), "--window", "5"]
        collector = await asyncio.to_thread(
            subprocess.Popen, command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        await asyncio.to_thread(wait_for_line, collector, READY, 20)
        await asyncio.sleep(0.5)  # Austin attaches
    try:
        t0 = time.monotonic() + 1.0
        cpu0 = _collector_cpu(collector)
        await asyncio.sleep(args.phase)
        t1 = time.monotonic()
        cpu1 = _collector_cpu(collector)
    finally:
        if collector is not None:
            collector.terminate()
            await asyncio.to_thread(collector.wait, 15)
            assert collector.stdout is not None
            collector.stdout.close()
    return {
        "attached": attached,
        "rate": meter.rate(t0, t1),
        "collector_cpu": (cpu1 - cpu0) / (t1 - t0 + 1.0) if attached else 0.0,
    }


def _collector_cpu(collector: subprocess.Popen[str] | None) -> float:
    if collector is None:
        return 0.0
    return cpu_seconds(collector.pid) + sum(cpu_seconds(c) for c in children(collector.pid))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m bench._collector_overhead", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=8, help="off/on pairs (8)")
    parser.add_argument("--phase", type=float, default=5.0, help="seconds per phase (5)")
    parser.add_argument("--interval-us", type=int, default=10_000, help="Austin's interval (10000: 100 Hz)")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--data-dir", default=None, help="the collector's store (a temporary directory)")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tickbus-bench-collector-") as tmp:
        args.data_dir = args.data_dir or tmp
        summary = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
