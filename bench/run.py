"""``python -m bench.run``: measure tickbus, raw pyzmq, NATS core and Redis pub/sub side by side.

Each system runs as one publisher process -> one server process -> one (or four) subscriber
processes on loopback: throughput 1->1, latency at a fixed rate, fan-out 1->4; then tickbus's
in-process routing cost at 10 / 1,000 / 10,000 patterns. Prints a table; ``--json`` writes all
figures. A system whose server or client library is missing is reported SKIPPED (peers) or n/a
(tickbus) and the run goes on. Exit status 1 when a measurement of an available system failed.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import _report, _routing
from ._scenario import Plan, measure
from ._systems import SYSTEMS, driver

ROUTING = "routing"


def _plans(args: argparse.Namespace) -> dict[str, Plan]:
    warm = 0.2 if args.quick else 0.5
    duration = args.duration or (1.0 if args.quick else 3.0)
    drain = 3.0 if args.quick else 5.0
    return {
        "throughput": Plan("throughput", 1, warm, duration, drain_s=drain),
        "latency": Plan("latency", 1, warm, duration, rate=args.rate, spin_us=args.spin_us, drain_s=drain),
        "fanout": Plan("throughput", args.fanout, warm, duration, drain_s=drain),
    }


def _selection(only: str | None) -> list[str]:
    if not only:
        return [*SYSTEMS, ROUTING]
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SYSTEMS and name != ROUTING]
    if unknown:
        names = ", ".join([*SYSTEMS, ROUTING])
        raise SystemExit(f"unknown system(s) {', '.join(unknown)}; choose from {names}")
    return chosen


def _run_system(name: str, plans: dict[str, Plan]) -> dict[str, Any]:
    reason = driver(name).unavailable()
    if reason is not None:
        status = "n/a" if name == "tickbus" else "skipped"
        banner = "n/a" if name == "tickbus" else "SKIPPED"
        print(f"\n*** {banner} {name}: {reason} ***\n", flush=True)
        return {"status": status, "reason": reason}
    result: dict[str, Any] = {"status": "ok", "reason": None, "errors": {}}
    for label, plan in plans.items():
        what = f"{plan.subscribers} subscriber(s), {plan.duration_s:g}s" + (
            f" at {plan.rate:,.0f} msgs/s" if plan.mode == "latency" else " flat out"
        )
        print(f"[{name}] {label}: {what} ...", flush=True)
        started = time.monotonic()
        try:
            result[label] = measure(name, plan)
        except Exception as exc:
            result["errors"][label] = "".join(traceback.format_exception_only(exc)) + (
                traceback.format_exc(limit=6) if not str(exc) else ""
            )
            print(f"[{name}] {label}: FAILED: {exc}", flush=True)
            continue
        print(f"[{name}] {label}: {_brief(result[label])} ({time.monotonic() - started:.1f}s)", flush=True)
    if len(result["errors"]) == len(plans) and name == "tickbus":
        result["status"] = "n/a"  # the slot is wired but tickbus did not run: report, do not pretend
        result["reason"] = "every measurement failed (see errors)"
    return result


def _brief(figures: dict[str, Any]) -> str:
    if "p50_us" in figures:
        return (
            f"p50 {figures['p50_us']:.1f} us, p99 {figures['p99_us']:.1f} us, "
            f"p99.9 {figures['p999_us']:.1f} us, loss {figures['loss_pct']:.2f}%"
        )
    return (
        f"{figures['rate']:,.0f} msgs/s per sub, {figures['total_rate']:,.0f} total, "
        f"sent {figures['send_rate']:,.0f}/s, loss {figures['loss_pct']:.2f}%"
    )


def _run_routing(quick: bool) -> dict[str, Any]:
    print("[tickbus] routing: SubscriptionIndex over recorded keys ...", flush=True)
    try:
        return {"status": "ok", **_routing.measure(min_s=0.1 if quick else 0.5)}
    except ImportError as exc:
        return {"status": "n/a", "reason": f"broker._index not importable: {exc}"}
    except FileNotFoundError as exc:
        reason = f"recorded keys not found ({exc.filename}); shared/ must sit beside the checkout"
        return {"status": "n/a", "reason": reason}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every selected measurement, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true", help="smoke run: ~1 s per measurement")
    parser.add_argument("--only", metavar="SYSTEM[,SYSTEM]", help=f"any of {', '.join([*SYSTEMS, ROUTING])}")
    parser.add_argument("--duration", type=float, help="seconds per measurement (default 3, quick 1)")
    parser.add_argument("--rate", type=float, default=10_000.0, help="latency test rate, msgs/s (10000)")
    parser.add_argument(
        "--spin-us",
        type=float,
        default=40.0,
        help="latency publisher busy-waits this long before a send (40)",
    )
    parser.add_argument("--fanout", type=int, default=4, help="subscriber processes in the fan-out test (4)")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every ``finally`` ends its child processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    selected = _selection(args.only)
    plans = _plans(args)
    document: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": args.quick,
            "rate": args.rate,
            "plans": {label: asdict(plan) for label, plan in plans.items()},
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
        },
        "systems": {},
    }
    for name in selected:
        if name != ROUTING:
            document["systems"][name] = _run_system(name, plans)
    if ROUTING in selected or "tickbus" in selected:
        document["routing"] = _run_routing(args.quick)
    document["ratios"] = _report.ratios(document["systems"])

    print()
    print(_report.table(document))
    if args.json:
        _report.write_json(document, args.json)
        print(f"\nwrote {args.json}")
    failed = any(s.get("errors") and s.get("status") == "ok" for s in document["systems"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: every child process has been ended", file=sys.stderr)
        sys.exit(130)
