"""The view of ``tickbus top``: a :class:`~._top_model.BusModel` drawn as rich tables.

The same renderable serves the live screen (``rich.live.Live``) and ``--once`` (a console without a
terminal, so plain text without control codes).
"""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ._top_model import BusModel


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _ns(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 1_000:
        return f"{value}ns"
    if value < 1_000_000:
        return f"{value / 1_000:.0f}µs"
    if value < 1_000_000_000:
        return f"{value / 1_000_000:.1f}ms"
    return f"{value / 1_000_000_000:.2f}s"


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"


def _broker(model: BusModel) -> RenderableType:
    if not model.brokers:
        return Text("broker: no statistics yet (waiting for ('$broker', 'stats'))")
    lines = [
        f"broker{' STALE' if b.stale else ''}: {_rate(b.msg_rate)} msgs/s  {_bytes(b.byte_rate)}/s  "
        f"forwarded {b.messages_forwarded}  "
        f"publishers {b.publishers}  subscribers {b.subscribers}  subscriptions {b.subscriptions}  "
        f"refused {b.refused}  denied {b.denied}  up {b.uptime_s:.0f}s  ({' '.join(b.endpoints)})"
        for b in sorted(model.brokers.values(), key=lambda b: b.endpoints)
    ]
    return Text("\n".join(lines))


def _groups(model: BusModel) -> Table:
    table = Table(title="groups", title_justify="left", expand=False, box=None, header_style="bold")
    widest = max((len(g.group) for g in model.group_rows()), default=5)
    for name in (
        "group",
        "state",
        "host",
        "pid",
        "in/s",
        "out/s",
        "gaps",
        "drops",
        "pubs",
        "gone",
        "lag",
        "brokers",
    ):
        if name == "group":
            table.add_column(name, no_wrap=True, min_width=widest)
        else:
            table.add_column(name, justify="left" if name in ("state", "host") else "right")
    for g in model.group_rows():
        state = "slow" if g.slow and g.state == "up" else g.state
        table.add_row(
            g.group,
            state,
            g.host or "-",
            str(g.pid or "-"),
            _rate(g.in_rate),
            _rate(g.out_rate),
            str(g.gaps),
            str(g.dropped),
            str(g.publishers_live),
            str(g.publishers_gone),
            f"{g.lag_seconds:.3f}s",
            g.brokers,
        )
    return table


def _actors(model: BusModel, sort: str) -> Table:
    table = Table(
        title=f"actors (sorted by {sort}; s: next sort column, q: quit)",
        title_justify="left",
        box=None,
        header_style="bold",
    )
    columns = (
        *("group", "actor", "in/s", "out/s", "handled", "queued", "dropped", "failures"),
        *("handler p50", "handler p99", "latency p50", "latency p99", "alerts"),
    )
    rows = model.actor_rows(sort)
    widest = {  # names stay whole on a narrow terminal; the numbers give way first
        "group": max((len(a.group) for a in rows), default=5),
        "actor": max((len(a.actor) for a in rows), default=5),
    }
    for name in columns:
        label = f"{name}*" if name == sort else name
        if name in widest:
            table.add_column(label, justify="left", no_wrap=True, min_width=widest[name])
        else:
            table.add_column(label, justify="right")
    for a in rows:
        table.add_row(
            a.group,
            a.actor + ("" if a.running else " (stopped)") + (" (stale)" if a.stale else ""),
            _rate(a.in_rate),
            _rate(a.out_rate),
            str(a.handled),
            str(a.queued),
            str(a.dropped),
            str(a.failures),
            _ns(a.handler_p50),
            _ns(a.handler_p99),
            _ns(a.latency_p50),
            _ns(a.latency_p99),
            str(a.alerts),
        )
    return table


def _notices(model: BusModel) -> list[RenderableType]:
    lines: list[RenderableType] = []
    for hub, notice in sorted(model.slow.items()):
        lines.append(
            Text(
                f"slow consumer: {hub} processing messages {float(notice.get('lag_seconds', 0)):.2f}s old, "
                f"{notice.get('gaps', 0)} gaps"
            )
        )
    for (group, actor, function), record in sorted(model.alerts.items()):
        change = record.get("relative_change")
        change_text = "new" if not isinstance(change, int | float) else f"{change:+.1%}"
        lines.append(
            Text(
                f"profile alert: {function} in actor {actor} (group {group}): {record.get('share', '')} "
                f"share {change_text}"
            )
        )
    if not lines:
        lines.append(Text("no slow consumers, no active profile alerts"))
    return lines


def render(model: BusModel, sort: str) -> RenderableType:
    """The whole frame: broker totals, groups, actors, slow consumers and profile alerts."""
    return Group(
        _broker(model), Text(""), _groups(model), Text(""), _actors(model, sort), Text(""), *_notices(model)
    )


def plain_text(model: BusModel, sort: str, width: int = 200) -> str:
    """One frame as plain text (no colours, no cursor movement), for ``--once``."""
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None, no_color=True)
    console.print(render(model, sort))
    return out.getvalue()
