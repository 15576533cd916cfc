"""The side-by-side table printed at the end, the tickbus ratios, and the JSON document."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = tuple[str, str, str, Callable[[float], str]]  # label, measurement, field, formatter

_RATIO_BASES = ("nats", "raw-zmq")


def _rate(x: float) -> str:
    return f"{x:,.0f}"


def _us(x: float) -> str:
    return f"{x:,.1f}"


def _pct(x: float) -> str:
    return f"{x:.2f}%"


ROWS: list[Row] = [
    ("throughput 1->1 (msgs/s recv)", "throughput", "rate", _rate),
    ("  loss 1->1", "throughput", "loss_pct", _pct),
    ("fan-out 1->4 per sub (msgs/s)", "fanout", "rate", _rate),
    ("fan-out 1->4 slowest sub", "fanout", "min_rate", _rate),
    ("fan-out 1->4 total delivered", "fanout", "total_rate", _rate),
    ("  loss 1->4", "fanout", "loss_pct", _pct),
    ("latency p50 (us) @ rate", "latency", "p50_us", _us),
    ("latency p99 (us)", "latency", "p99_us", _us),
    ("latency p99.9 (us)", "latency", "p999_us", _us),
    ("  achieved send rate", "latency", "send_rate", _rate),
    ("  loss at rate", "latency", "loss_pct", _pct),
]
_RATIO_FIELDS = {"rate", "min_rate", "total_rate", "p50_us", "p99_us", "p999_us"}


def _value(system: dict[str, Any], measurement: str, field: str) -> float | None:
    found = system.get(measurement)
    if not isinstance(found, dict):
        return None
    value = found.get(field)
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def ratios(systems: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"tickbus/nats": {"throughput.rate": x, ...}, ...}`` for every figure both systems have,
    plus ``"obs-on/off"``: the actor path with observability fully on over the same path off, and
    ``"checked/C"``: the checked broker (permissions on) over libzmq's proxy, both with CURVE."""
    out: dict[str, dict[str, float]] = {}
    for label, mine_name, base in [
        *((f"tickbus/{b}", "tickbus", b) for b in _RATIO_BASES),
        ("obs-on/off", "actors+obs", "actors"),
        ("checked/C", "tickbus+perm", "tickbus+curve"),
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
    value = _value(system, measurement, field)
    return "-" if value is None else fmt(value)


def table(document: dict[str, Any]) -> str:
    """The comparison table, then the routing table, then notes on skipped/failed systems."""
    systems: dict[str, dict[str, Any]] = document["systems"]
    ratio_map = document.get("ratios", {})
    ratio_cols = [f"tickbus/{b}" for b in _RATIO_BASES if f"tickbus/{b}" in ratio_map]
    ratio_cols += [c for c in ("obs-on/off", "checked/C") if c in ratio_map]
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
    return "\n".join(out)


def _system_lines(document: dict[str, Any], ratio_cols: list[str]) -> list[str]:
    systems: dict[str, dict[str, Any]] = document["systems"]
    ratio_map = document.get("ratios", {})
    header = ["", *systems, *ratio_cols]
    lines = [header]
    for label, measurement, field, fmt in ROWS:
        shown = label.replace("@ rate", f"@ {document['meta']['rate']:,.0f}/s")
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
    return out


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
