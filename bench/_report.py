"""The side-by-side table printed at the end, the tickbus ratios, the acceptance ratios, the JSON."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

AB_ROUNDS = 5
"""Rounds of the rows measured in turn for the acceptance checks (:func:`bench.run._alternate`)."""
_TURNS = f"medians of {AB_ROUNDS} in turn"
OBS_ON = 0.95
"""The obs-on check: actors+obs throughput over actors' at least this (issue 12: costs <= 5 %)."""

Row = tuple[str, str, str, Callable[[float], str]]  # label, measurement, field, formatter

_RATIO_BASES = ("nats", "raw-zmq")


def _rate(x: float) -> str:
    return f"{x:,.0f}"


def _us(x: float) -> str:
    return f"{x:,.1f}"


def _pct(x: float) -> str:
    return f"{x:.2f}%"


def _x(x: float) -> str:
    return f"{x:.2f}x"


def _count(x: float) -> str:
    return f"{x:,.0f}"


ROWS: list[Row] = [
    ("throughput 1->1 (msgs/s recv)", "throughput", "rate", _rate),
    ("  loss 1->1", "throughput", "loss_pct", _pct),
    ("fan-out 1->4 per sub (msgs/s)", "fanout", "rate", _rate),
    ("fan-out 1->4 slowest sub", "fanout", "min_rate", _rate),
    ("fan-out 1->4 total delivered", "fanout", "total_rate", _rate),
    ("  loss 1->4", "fanout", "loss_pct", _pct),
    ("latency p50 (us) @ {rate}", "latency", "p50_us", _us),
    ("latency p99 (us)", "latency", "p99_us", _us),
    ("latency p99.9 (us)", "latency", "p999_us", _us),
    ("  achieved send rate", "latency", "send_rate", _rate),
    ("  loss at rate", "latency", "loss_pct", _pct),
    ("latency p50 (us) @ {rate_high}", "latency_high", "p50_us", _us),
    ("latency p99 (us)", "latency_high", "p99_us", _us),
    ("latency p99.9 (us)", "latency_high", "p999_us", _us),
    ("  achieved send rate", "latency_high", "send_rate", _rate),
    ("  loss at rate", "latency_high", "loss_pct", _pct),
    ("3-hop tick->decision p50 @ {pipeline_rate}", "pipeline", "p50_us", _us),
    ("3-hop p99 (us)", "pipeline", "p99_us", _us),
    ("3-hop p99.9 (us)", "pipeline", "p999_us", _us),
    ("  feed -> model p99.9 (us)", "pipeline", "hop_in_p999_us", _us),
    ("  model -> strategy p99.9 (us)", "pipeline", "hop_out_p999_us", _us),
    ("  achieved tick rate", "pipeline", "send_rate", _rate),
    ("  loss 3-hop", "pipeline", "loss_pct", _pct),
    ("overload: offered target ({factor} cap)", "overload", "target_rate", _rate),
    ("  achieved offered rate", "overload", "send_rate", _rate),
    ("overload goodput (msgs/s handled)", "overload", "goodput", _rate),
    ("  goodput / capacity", "overload", "goodput_ratio", _x),
    ("  undelivered (sent - recv)", "overload", "undelivered", _count),
    ("  counted by the system", "overload", "counted", _count),
]
_RATIO_FIELDS = {"rate", "min_rate", "total_rate", "p50_us", "p99_us", "p999_us", "goodput"}


def _value(system: dict[str, Any], measurement: str, field: str) -> float | None:
    found = system.get(measurement)
    if not isinstance(found, dict):
        return None
    value = found.get(field)
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def ratios(systems: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"tickbus/nats": {"throughput.rate": x, ...}, ...}`` for every figure both systems have,
    plus ``"obs-on/off"``: the actor path with observability fully on over the same path off,
    ``"checked/C"``: the checked broker (permissions on) over libzmq's proxy, both with CURVE, and
    ``"pair/single"`` / ``"actors pair/single"``: through a broker pair over through one broker."""
    out: dict[str, dict[str, float]] = {}
    for label, mine_name, base in [
        *((f"tickbus/{b}", "tickbus", b) for b in _RATIO_BASES),
        ("obs-on/off", "actors+obs", "actors"),
        ("checked/C", "tickbus+perm", "tickbus+curve"),
        ("pair/single", "tickbus+pair", "tickbus"),
        ("actors pair/single", "actors+pair", "actors"),
    ]:
        tickbus = systems.get(mine_name, {})
        other = systems.get(base, {})
        pairs: dict[str, float] = {}
        for _, measurement, field, _ in ROWS:
            if field not in _RATIO_FIELDS:
                continue
            mine, theirs = _value(tickbus, measurement, field), _value(other, measurement, field)
            if mine is not None and theirs:
                pairs[f"{measurement}.{field}"] = mine / theirs
        if pairs:
            out[label] = pairs
    return out


def _cell(system: dict[str, Any], measurement: str, field: str, fmt: Callable[[float], str]) -> str:
    status = system.get("status", "")
    if status in ("skipped", "n/a"):
        return "SKIPPED" if status == "skipped" else "n/a"
    if measurement in system.get("errors", {}):
        return "error"
    if measurement in system.get("skipped_rows", {}):
        return "skipped"
    value = _value(system, measurement, field)
    if value is None:  # not part of this row: "-"; measured, but the system has no such figure: "n/a"
        found = system.get(measurement)
        return "n/a" if isinstance(found, dict) and field in found else "-"
    return fmt(value)


def table(document: dict[str, Any]) -> str:
    """The comparison table, then the routing table, then notes on skipped/failed systems."""
    systems: dict[str, dict[str, Any]] = document["systems"]
    ratio_map = document.get("ratios", {})
    ratio_cols = [f"tickbus/{b}" for b in _RATIO_BASES if f"tickbus/{b}" in ratio_map]
    extra = ("obs-on/off", "checked/C", "pair/single", "actors pair/single")
    ratio_cols += [c for c in extra if c in ratio_map]
    out = _system_lines(document, ratio_cols) if systems else []
    out.extend(_routing_lines(document.get("routing")))
    for name, system in systems.items():
        if system.get("status") == "skipped":
            out.append(f"SKIPPED {name}: {system.get('reason')}")
        elif system.get("status") == "n/a":
            out.append(f"n/a {name}: {system.get('reason')}")
        for measurement, error in system.get("errors", {}).items():
            last = error.strip().splitlines()[-1] if error.strip() else ""
            out.append(f"ERROR {name} {measurement}: {last}")
        for measurement, reason in system.get("skipped_rows", {}).items():
            out.append(f"SKIPPED {name} {measurement}: {reason}")
    return "\n".join(out)


def _system_lines(document: dict[str, Any], ratio_cols: list[str]) -> list[str]:
    systems: dict[str, dict[str, Any]] = document["systems"]
    ratio_map = document.get("ratios", {})
    header = ["", *systems, *ratio_cols]
    lines = [header]
    meta = document["meta"]
    rates = {
        key: f"{meta[key]:,.0f}/s" if isinstance(meta.get(key), int | float) else "?"
        for key in ("rate", "rate_high", "pipeline_rate")
    }
    rates["factor"] = f"{meta.get('overload_factor', 2.0):g}x"
    for label, measurement, field, fmt in ROWS:
        if not any(isinstance(system.get(measurement), dict) for system in systems.values()):
            continue  # a row no selected system ran (e.g. overload with --only redis)
        shown = label.format(**rates)
        row = [shown, *(_cell(systems[name], measurement, field, fmt) for name in systems)]
        for col in ratio_cols:
            value = ratio_map[col].get(f"{measurement}.{field}")
            row.append(f"{value:.2f}x" if value is not None else "")
        lines.append(row)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    out = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in lines
    ]
    out.insert(1, "-" * len(out[0]))
    if ratio_cols:
        out.append("ratios: throughput rows >1x = tickbus faster; latency rows <1x = tickbus faster")
    if "overload" in {m for _, m, _, _ in ROWS if any(isinstance(s.get(m), dict) for s in systems.values())}:
        out.append(
            "overload: capacity = the system's throughput 1->1 in this run; undelivered and counted cover "
            "the whole stream (warm-up, measured, end probes); n/a = the system counts no loss"
        )
    return out


Check = tuple[str, tuple[str, str, str], tuple[str, str, str] | None, str, float]
"""name, (system, measurement, field) of the value, the same of the divisor (None: an absolute
value), the comparison (``>=``, ``<=``, ``<``), the target."""


def _checks(meta: dict[str, Any]) -> list[Check]:
    low, high = f"{meta.get('rate', 10_000) / 1000:g}k", f"{meta.get('rate_high', 40_000) / 1000:g}k"
    return [
        (
            f"actors 1->1 throughput / nats ({_TURNS})",
            ("actors", "throughput_ab", "rate"),
            ("nats", "throughput_ab", "rate"),
            ">=",
            1.2,
        ),
        (
            f"tickbus (aiopubsub) 1->1 throughput / nats ({_TURNS})",
            ("tickbus", "throughput_ab", "rate"),
            ("nats", "throughput_ab", "rate"),
            ">=",
            1.2,
        ),
        (
            # capacity: the median of the in-turn 1->1 runs, the same statistic as the goodput (the
            # single 1->1 run that sets the offered rate read 256k against 212-230k in turn once)
            f"actors overload goodput (median of {AB_ROUNDS} more runs) / actors capacity ({_TURNS})",
            ("actors", "overload_ab", "goodput"),
            ("actors", "throughput_ab", "rate"),
            ">=",
            0.9,
        ),
        (
            f"actors p99 @{low} / nats p99 @{low} ({_TURNS})",
            ("actors", "latency_ab", "p99_us"),
            ("nats", "latency_ab", "p99_us"),
            "<=",
            0.8,
        ),
        (
            f"actors p99 @{high} (us, median of {AB_ROUNDS} more runs)",
            ("actors", "latency_high_ab", "p99_us"),
            None,
            "<",
            2_000.0,
        ),
        (
            f"actors 3-hop p99.9 / nats 3-hop p99.9 ({_TURNS})",
            ("actors", "pipeline_ab", "p999_us"),
            ("nats", "pipeline_ab", "p999_us"),
            "<=",
            0.8,
        ),
        (
            f"actors+obs 1->1 throughput / actors ({_TURNS})",
            ("actors+obs", "throughput_ab", "rate"),
            ("actors", "throughput_ab", "rate"),
            ">=",
            OBS_ON,
        ),
    ]


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}


def acceptance(
    systems: dict[str, dict[str, Any]], meta: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The issue-12 acceptance checks: ``{"check", "value", "target", "result", "detail"}`` each,
    ``result`` PASS, FAIL or n/a (a figure it needs was not measured in this run)."""
    out: list[dict[str, Any]] = []
    for name, (system, measurement, field), divisor, op, target in _checks(meta or {}):
        value = _value(systems.get(system, {}), measurement, field)
        detail = ""
        if value is not None and divisor is not None:
            base = _value(systems.get(divisor[0], {}), divisor[1], divisor[2])
            detail = f"{value:,.1f} / {base:,.1f}" if base else ""
            value = value / base if base else None
        needed = [f"{system} {measurement}"]
        if divisor is not None and f"{divisor[0]} {divisor[1]}" not in needed:
            needed.append(f"{divisor[0]} {divisor[1]}")
        missing = "needs " + " and ".join(needed)
        out.append(
            {
                "check": name,
                "value": value,
                "target": f"{op} {target:g}x" if divisor else f"{op} {target:,.0f} us",
                "result": "n/a" if value is None else ("PASS" if _COMPARE[op](value, target) else "FAIL"),
                "detail": detail if value is not None else f"{missing} in this run",
            }
        )
    _bracket_obs(systems, out)
    _cpu_detail(systems, out)
    # every overload run of actors, the row's and those for the goodput's median
    actors = systems.get("actors", {})
    row, more = actors.get("overload"), actors.get("overload_ab")
    runs = ([row] if isinstance(row, dict) else []) + (more.get("runs", []) if isinstance(more, dict) else [])
    known = bool(runs) and all(None not in (r.get("counted"), r.get("undelivered")) for r in runs)
    counted = sum(r["counted"] for r in runs) if known else None
    undelivered = sum(r["undelivered"] for r in runs) if known else None
    miscounted = sum(1 for r in runs if r["counted"] != r["undelivered"]) if known else 0
    out.append(
        {
            "check": "actors overload: every undelivered message counted",
            "value": counted,
            "target": "== sent - received",
            "result": ("FAIL" if miscounted else "PASS") if known else "n/a",
            "detail": f"counted {counted:,} of {undelivered:,} in {len(runs)} run(s)"
            + (f", {miscounted} miscounted" if miscounted else "")
            if known
            else "needs actors overload in this run",
        }
    )
    return out


def bracketed(systems: dict[str, dict[str, Any]], field: str = "rate") -> list[float] | None:
    """Each turn's actors+obs throughput over the mean of the two actors runs on either side of it
    (``throughput_ab`` before, ``throughput_again`` after), in turn order; ``None`` unless every
    turn has all three.

    Why: the obs-on check divides two runs of one turn, and on this VM a turn's runs move together
    (the machine's load changes over minutes) and by position (in four runs of session 27 the
    actors run after actors+obs was 1.00-1.08x the one before it, in medians). A ratio of medians
    keeps both in the result; the runs either side of each obs-on run cancel a drift that is
    linear over the turn, and take the obs-on run's own position's share of the rest."""
    on = _runs(systems, "actors+obs", "throughput_ab", field)
    before = _runs(systems, "actors", "throughput_ab", field)
    after = _runs(systems, "actors", "throughput_again", field)
    if not on or len(on) != len(before) or len(on) != len(after):
        return None
    return [value / ((first + second) / 2) for value, first, second in zip(on, before, after, strict=True)]


def _runs(
    systems: dict[str, dict[str, Any]], system: str, measurement: str, field: str
) -> list[float] | None:
    found = systems.get(system, {}).get(measurement)
    runs = found.get("runs") if isinstance(found, dict) else None
    if not isinstance(runs, list):
        return None
    values = [run.get(field) if isinstance(run, dict) else None for run in runs]
    if not all(isinstance(v, int | float) and not math.isnan(v) and v > 0 for v in values):
        return None
    return [float(v) for v in values]


def _bracket_obs(systems: dict[str, dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    """The obs-on check read as the median of :func:`bracketed`, when the run has it (the ratio of
    medians stays in the detail)."""
    ratios = bracketed(systems)
    for check in checks:
        if not check["check"].startswith("actors+obs") or ratios is None:
            continue
        value = statistics.median(ratios)
        check["check"] = f"actors+obs 1->1 throughput / actors either side (median of {len(ratios)} turns)"
        medians = f"; ratio of medians {check['value']:.2f}x ({check['detail']})" if check["value"] else ""
        check["detail"] = "per turn " + ", ".join(f"{r:.3f}" for r in ratios) + medians
        check["value"] = value
        check["result"] = "PASS" if value >= OBS_ON else "FAIL"


def _cpu_detail(systems: dict[str, dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    """Add to the obs-on check what observability costs in CPU per message (publisher + subscriber,
    medians in turn): the rate ratio answers for throughput, this for the CPU an operator pays."""
    on = _value(systems.get("actors+obs", {}), "throughput_ab", "cpu_ns_per_msg")
    off = _value(systems.get("actors", {}), "throughput_ab", "cpu_ns_per_msg")
    for check in checks:
        if check["check"].startswith("actors+obs") and on and off and check["detail"]:
            check["detail"] += f"; CPU per message {on:,.0f} / {off:,.0f} ns ({on / off - 1:+.1%})"


def acceptance_lines(checks: list[dict[str, Any]]) -> str:
    """The acceptance checks as a small table."""
    rows = [["acceptance (issue 12)", "value", "target", "result", ""]]
    for check in checks:
        value = check["value"]
        if value is None:
            shown = "-"
        elif check["target"].endswith("x"):
            shown = f"{value:.2f}x"
        else:
            shown = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
        rows.append([check["check"], shown, check["target"], check["result"], check["detail"]])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(
            [r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:4], widths[1:], strict=True)), r[4]]
        ).rstrip()
        for r in rows
    )


def floor(
    systems: dict[str, dict[str, Any]], meta: dict[str, Any] | None = None, measurements: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Raw pyzmq's ratios to NATS on the checks that compare actors with NATS in the turns raw pyzmq
    joins (``measurements``, e.g. ``latency_ab``: the tails).

    Not targets: raw pyzmq is tickbus's transport with no Python work beyond decoding, so where
    it does not reach a ratio on this machine, no code above it can. ``value`` None when raw-zmq
    or nats did not run in the turns."""
    out = []
    for name, (system, measurement, field), divisor, op, target in _checks(meta or {}):
        if system != "actors" or divisor is None or divisor[0] != "nats" or measurement not in measurements:
            continue
        raw = _value(systems.get("raw-zmq", {}), measurement, field)
        nats = _value(systems.get("nats", {}), divisor[1], divisor[2])
        if raw is not None and nats:
            value: float | None = raw / nats
            detail = f"{raw:,.1f} / {nats:,.1f}"
        else:
            value, detail = None, f"needs raw-zmq and nats {measurement}"
        out.append(
            {
                "check": name.replace("actors ", "raw-zmq ", 1),
                "value": value,
                "actors_target": f"{op} {target:g}x",
                "detail": detail,
            }
        )
    return out


def floor_lines(lines: list[dict[str, Any]]) -> str:
    """The floor as a small table below the acceptance checks."""
    rows = [["the floor (raw pyzmq, same turns; not a check)", "value", "actors' target", ""]]
    for line in lines:
        shown = "-" if line["value"] is None else f"{line['value']:.2f}x"
        rows.append([line["check"], shown, line["actors_target"], line["detail"]])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), r[3]]).rstrip()
        for r in rows
    )


def noise(systems: dict[str, dict[str, Any]], again: dict[str, str]) -> list[dict[str, Any]]:
    """For each row whose turns measured a system twice (``{row: system}``): the second medians over
    the first, per figure: a ratio of the same code to itself, what this run's turns make of no change.

    Not a check. On a quiet machine it reads 1.00x; the obs-on check's 0.95x is to be read beside
    it (an A/A ratio of 0.90x or 1.10x says the run cannot tell a 5 % cost from none)."""
    out = []
    for row, system in again.items():
        measured = systems.get(system, {})
        first = measured.get(f"{row}_ab")
        for field in (f for f in first if f != "runs") if isinstance(first, dict) else ():
            a, b = _value(measured, f"{row}_ab", field), _value(measured, f"{row}_again", field)
            if a and b is not None:
                out.append(
                    {
                        "check": f"{system} again / {system}, {row} {field} (medians of {AB_ROUNDS} in turn)",
                        "value": b / a,
                        "detail": f"{b:,.1f} / {a:,.1f}",
                    }
                )
    return out


def noise_lines(lines: list[dict[str, Any]]) -> str:
    """The A/A ratios as a small table below the floor."""
    rows = [["the noise (the same code twice in the same turns; not a check)", "value", ""]]
    rows += [[line["check"], f"{line['value']:.2f}x", line["detail"]] for line in lines]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join("  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2]]).rstrip() for r in rows)


def _routing_lines(routing: dict[str, Any] | None) -> list[str]:
    if routing is None:
        return []
    if routing.get("status") != "ok":
        return ["", f"routing (tickbus SubscriptionIndex): {routing.get('status')}: {routing.get('reason')}"]
    out = [
        "",
        f"routing cost per message, tickbus SubscriptionIndex, {routing['keys_in_stream']} recorded keys "
        f"in order ({routing['distinct_keys']} distinct)",
        f"{'patterns':>9}  {'uncached ns':>11}  {'cached ns':>9}  {'matches/key':>11}",
    ]
    for size, row in routing["sizes"].items():
        out.append(
            f"{int(size):>9,}  {row['uncached_ns']:>11,.0f}  {row['cached_ns']:>9,.0f}  "
            f"{row['matches_per_key']:>11.2f}"
        )
    out.append(routing["attribution"])
    return out


def write_json(document: dict[str, Any], path: Path) -> None:
    """Write ``document`` to ``path`` (NaN becomes null), creating the folder if needed."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(document), indent=2) + "\n")
