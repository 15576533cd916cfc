"""``python -m bench.run``: measure tickbus, raw pyzmq, NATS core and Redis pub/sub side by side.

Each system runs as one publisher process -> one server process -> one (or four) subscriber
processes on loopback: throughput 1->1, latency at two fixed rates, fan-out 1->4, a 3-hop pipeline
(feed -> model -> strategy, :mod:`bench._pipeline`) and an overload run at twice the system's
1->1 capacity measured just before; then tickbus's in-process routing cost at 10 / 1,000 / 10,000
patterns. Prints a table and the acceptance ratios; ``--json`` writes all figures. A system whose
server or client library is missing is reported SKIPPED (peers) or n/a (tickbus) and the run goes
on. Exit status 1 when a measurement of an available system failed (not when a ratio misses).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from . import _pipeline, _report, _routing
from ._report import AB_ROUNDS
from ._scenario import Plan, measure
from ._systems import SYSTEMS, driver

ROUTING = "routing"
OVERLOAD_SYSTEMS = ("tickbus", "actors", "nats", "raw-zmq")
"""Systems the overload row runs for (its offered rate comes from their throughput 1->1 row)."""


def _plans(args: argparse.Namespace) -> dict[str, Plan]:
    warm = 0.2 if args.quick else 0.5
    duration = args.duration or (1.0 if args.quick else 3.0)
    short = args.duration or (1.0 if args.quick else 2.0)  # the rows added for issue 12
    drain = 3.0 if args.quick else 5.0
    spin = args.spin_us
    return {
        "throughput": Plan("throughput", 1, warm, duration, drain_s=drain),
        "latency": Plan("latency", 1, warm, duration, rate=args.rate, spin_us=spin, drain_s=drain),
        "latency_high": Plan("latency", 1, warm, short, rate=args.rate_high, spin_us=spin, drain_s=drain),
        "fanout": Plan("throughput", args.fanout, warm, duration, drain_s=drain),
        # 6 s: 30,000 ticks, so its p99.9 is not one scheduler hiccup of this machine (10,000 at 2 s)
        "pipeline": Plan(
            "pipeline",
            1,
            warm,
            args.duration or (1.0 if args.quick else 6.0),
            rate=args.pipeline_rate,
            spin_us=spin,
            drain_s=drain,
        ),
        # rate and capacity are filled in per system from its throughput row (see _plan_for)
        "overload": Plan("overload", 1, warm, short, rate=0.0, spin_us=spin, drain_s=drain + 7.0),
    }


def _plan_for(name: str, label: str, plan: Plan, result: dict[str, Any], factor: float) -> Plan | str | None:
    """The plan to run for ``label``, or why it is skipped (a string), or None: not part of the row."""
    if label == "pipeline":
        return plan if _pipeline.unavailable(name) is None else None
    if label != "overload":
        return plan
    if name not in OVERLOAD_SYSTEMS:
        return None
    throughput = result.get("throughput")
    capacity = throughput.get("rate") if isinstance(throughput, dict) else None
    if not capacity:
        return "no capacity to overload: the throughput 1->1 row failed in this run"
    return replace(plan, rate=factor * capacity, capacity=capacity)


def _selection(only: str | None) -> list[str]:
    if not only:
        return [*SYSTEMS, ROUTING]
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SYSTEMS and name != ROUTING]
    if unknown:
        names = ", ".join([*SYSTEMS, ROUTING])
        raise SystemExit(f"unknown system(s) {', '.join(unknown)}; choose from {names}")
    return chosen


def _run_system(name: str, plans: dict[str, Plan], factor: float) -> dict[str, Any]:
    reason = driver(name).unavailable()
    if reason is not None:
        status = "n/a" if name == "tickbus" else "skipped"
        banner = "n/a" if name == "tickbus" else "SKIPPED"
        print(f"\n*** {banner} {name}: {reason} ***\n", flush=True)
        return {"status": status, "reason": reason}
    result: dict[str, Any] = {"status": "ok", "reason": None, "errors": {}, "skipped_rows": {}}
    ran = 0
    for label, template in plans.items():
        plan = _plan_for(name, label, template, result, factor)
        if plan is None:
            continue
        if isinstance(plan, str):
            result["skipped_rows"][label] = plan
            print(f"[{name}] {label}: SKIPPED: {plan}", flush=True)
            continue
        ran += 1
        print(f"[{name}] {label}: {_what(plan)} ...", flush=True)
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
    if len(result["errors"]) == ran and name == "tickbus":
        result["status"] = "n/a"  # the slot is wired but tickbus did not run: report, do not pretend
        result["reason"] = "every measurement failed (see errors)"
    return result


ALTERNATED = (  # (row, the systems run in turn, the figures whose medians the acceptance checks read,
    # systems that join the turns when they ran: NATS and the aiopubsub API, which the 1->1 checks
    # divide by and compare; raw pyzmq, the floor actors' tail ratios stand on)
    ("throughput", ("actors", "actors+obs"), ("rate", "cpu_ns_per_msg"), ("nats", "tickbus")),
    ("latency", ("actors", "nats"), ("p50_us", "p99_us", "p999_us"), ("raw-zmq",)),
    (
        "pipeline",
        ("actors", "nats"),
        ("p50_us", "p99_us", "p999_us", "hop_in_p999_us", "hop_out_p999_us"),
        ("raw-zmq",),
    ),
    ("latency_high", ("actors",), ("p50_us", "p99_us", "p999_us"), ()),  # an absolute target: runs again
    # against the row's capacity, at the row's offered rate: one 2 s run read 0.73x, three after it 0.93-1.02x
    ("overload", ("actors",), ("goodput", "undelivered", "counted"), ()),
)
AGAIN = {"throughput": "actors"}
"""Rows whose turns measure a system twice: a second time right after the systems the checks
compare, as ``<row>_again``. The same code twice in the same turns: its ratio is how far this run's
turns move a ratio that no code changed (the obs-on check's ~5 % is smaller than it can be on a
noisy VM)."""


def _alternate(
    systems: dict[str, dict[str, Any]],
    label: str,
    plan: Plan,
    names: tuple[str, ...],
    fields: tuple[str, ...],
    *,
    references: tuple[str, ...] = (),
    again: str | None = None,
) -> None:
    """Row ``label`` of ``names`` measured in turn, ``AB_ROUNDS`` times each; medians in ``<label>_ab``.

    The systems' own rows run minutes apart, and on this 2-core VM a throughput moves 10-20 % and a
    p99 up to 2x between runs: a 5 % cost, or a ratio of two tails, cannot be read from one pair
    taken that far apart. Medians of runs taken in turn are what the acceptance checks compare; the
    rows stay as measured (the table). ``references`` join the turns (NATS and the aiopubsub API for
    the 1->1 checks, raw pyzmq for the floor): one that fails leaves them, where a failure of
    ``names`` ends the turns. ``again`` (one of ``names``) is measured a second time in each turn,
    right after ``names`` (see :data:`AGAIN`); it leaves the turns as a reference does.
    """
    system_of = {name: name for name in names}  # each entry of a turn, in order -> its system
    second = None
    if again is not None and again in names:
        second = f"{again} again"
        system_of[second] = again
    system_of.update({name: name for name in references})
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in system_of}
    for round_ in range(1, AB_ROUNDS + 1):
        for name in list(found):
            print(f"[{name}] {label} in turn, round {round_}/{AB_ROUNDS} ...", flush=True)
            try:
                found[name].append(measure(system_of[name], plan))
            except Exception as exc:
                print(f"[{name}] {label} in turn: FAILED: {exc}", flush=True)
                if name not in references and name != second:
                    return
                del found[name]  # a reference that failed leaves the turns; the checks' systems go on
    for name, runs in found.items():
        medians = {field: statistics.median(run[field] for run in runs) for field in fields}
        suffix = "again" if name == second else "ab"
        runs_shown = [{f: run[f] for f in fields} for run in runs]
        systems[system_of[name]][f"{label}_{suffix}"] = {**medians, "runs": runs_shown}
        shown = "; ".join(", ".join(f"{run[f]:,.0f}" for f in fields) for run in runs)
        print(f"[{name}] {label} in turn ({', '.join(fields)}): {shown}", flush=True)


def _what(plan: Plan) -> str:
    what = f"{plan.subscribers} subscriber(s), {plan.duration_s:g}s"
    if plan.mode == "overload":
        return what + f" paced at {plan.rate:,.0f} msgs/s (capacity {plan.capacity:,.0f})"
    if plan.mode == "pipeline":
        return f"feed -> model -> strategy, {plan.duration_s:g}s at {plan.rate:,.0f} ticks/s"
    return what + (f" at {plan.rate:,.0f} msgs/s" if plan.mode == "latency" else " flat out")


def _brief(figures: dict[str, Any]) -> str:
    if "goodput" in figures:
        counted = figures["counted"]
        return (
            f"offered {figures['send_rate']:,.0f}/s, goodput {figures['goodput']:,.0f}/s "
            f"({figures['goodput_ratio']:.2f}x capacity), undelivered {figures['undelivered']}, "
            f"counted {'n/a' if counted is None else counted}"
        )
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
        "--rate-high", type=float, default=40_000.0, help="second latency test rate, msgs/s (40000)"
    )
    parser.add_argument(
        "--pipeline-rate", type=float, default=5_000.0, help="3-hop pipeline tick rate, msgs/s (5000)"
    )
    parser.add_argument(
        "--overload-factor",
        type=float,
        default=2.0,
        help="overload row: offered rate = this x the system's 1->1 throughput in this run (2)",
    )
    parser.add_argument(
        "--spin-us",
        type=float,
        default=40.0,
        help="latency publisher busy-waits this long before a send (40)",
    )
    parser.add_argument("--fanout", type=int, default=4, help="subscriber processes in the fan-out test (4)")
    parser.add_argument(
        "--rows",
        metavar="ROW[,ROW]",
        help="measure only these of throughput, latency, latency_high, fanout, pipeline, overload "
        "(overload needs throughput)",
    )
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every ``finally`` ends its child processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    selected = _selection(args.only)
    plans = _plans(args)
    if args.rows:
        wanted = [row.strip() for row in args.rows.split(",") if row.strip()]
        unknown = [row for row in wanted if row not in plans]
        if unknown:
            parser.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(plans)}")
        plans = {label: plan for label, plan in plans.items() if label in wanted}
    document: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": args.quick,
            "rate": args.rate,
            "rate_high": args.rate_high,
            "pipeline_rate": args.pipeline_rate,
            "overload_factor": args.overload_factor,
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
            document["systems"][name] = _run_system(name, plans, args.overload_factor)
    ran = document["systems"]
    for label, names, fields, references in ALTERNATED:
        if label in plans and all(ran.get(name, {}).get(label) for name in names):
            joined = tuple(name for name in references if ran.get(name, {}).get(label))
            plan = _plan_for(names[0], label, plans[label], ran[names[0]], args.overload_factor)
            if isinstance(plan, Plan):  # overload: the offered rate and capacity of the system's row
                _alternate(ran, label, plan, names, fields, references=joined, again=AGAIN.get(label))
    if ROUTING in selected or "tickbus" in selected:
        document["routing"] = _run_routing(args.quick)
    document["ratios"] = _report.ratios(document["systems"])
    document["acceptance"] = _report.acceptance(document["systems"], document["meta"])

    print()
    print(_report.table(document))
    print()
    print(_report.acceptance_lines(document["acceptance"]))
    floored = tuple(f"{label}_ab" for label, _, _, references in ALTERNATED if "raw-zmq" in references)
    document["floor"] = _report.floor(document["systems"], document["meta"], floored)
    if any(line["value"] is not None for line in document["floor"]):
        print()
        print(_report.floor_lines(document["floor"]))
    document["noise"] = _report.noise(document["systems"], AGAIN)
    if document["noise"]:
        print()
        print(_report.noise_lines(document["noise"]))
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
