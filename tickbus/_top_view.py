"""The view of ``tickbus top``: a :class:`~._top_model.BusModel` drawn as rich tables.

The same renderable serves the live screen (``rich.live.Live``) and ``--once`` (a console without a
terminal, so plain text without control codes).

Every name in the frame was chosen by a peer (groups, hosts, actors, hubs, functions, endpoints):
each goes through :func:`observability.printable` (no control character reaches the terminal) into
a rich ``Text`` (never parsed as markup), and only fields the model type-checked are drawn. Should a
frame still fail, :class:`Frames` counts it and keeps the previous one on the screen. The live view
draws no more rows of a table than the screen has lines (rendering thousands every second would hold
the loop), ``--once`` every row; the status line under the broker's says what the model ignored.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from observability import printable

from ._top_model import BusModel

_NAME = 64  # characters shown of a group, actor or host name in a table cell


def _name(value: str) -> Text:
    """A peer-chosen name as a table cell: control characters escaped, cut, never markup."""
    return Text(printable(value, _NAME))


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
        f"refused {b.refused}  denied {b.denied}  up {b.uptime_s:.0f}s  ({printable(' '.join(b.endpoints))})"
        for b in sorted(model.brokers.values(), key=lambda b: b.endpoints)
    ]
    return Text("\n".join(lines))


def _more(shown: int, total: int, what: str) -> str | None:
    """The caption under a table cut to fit the screen."""
    return (
        f"... and {total - shown} more {what} (`tickbus top --once` prints every row)"
        if total > shown
        else None
    )


def _groups(model: BusModel, limit: int | None) -> Table:
    every = model.group_rows()
    rows = [(g, _name(g.group)) for g in every[:limit]]
    table = Table(
        title="groups",
        title_justify="left",
        caption=_more(len(rows), len(every), "groups"),
        caption_justify="left",
        expand=False,
        box=None,
        header_style="bold",
    )
    widest = max((cell_len(group.plain) for _, group in rows), default=5)
    for name in (
        "group",
        "state",
        "host",
        "pid",
        "in/s",
        "out/s",
        "gaps",
        "skimmed",
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
    for g, group in rows:
        state = "slow" if g.slow and g.state == "up" else g.state
        table.add_row(
            group,
            state,
            _name(g.host) if g.host else "-",
            str(g.pid or "-"),
            _rate(g.in_rate),
            _rate(g.out_rate),
            str(g.gaps),
            str(g.skimmed),
            str(g.dropped),
            str(g.publishers_live),
            str(g.publishers_gone),
            f"{g.lag_seconds:.3f}s",
            g.brokers,
        )
    return table


def _actors(model: BusModel, sort: str, limit: int | None) -> Table:
    every = model.actor_rows(sort)
    rows = [(a, _name(a.group), _name(a.actor)) for a in every[:limit]]
    table = Table(
        title=f"actors (sorted by {sort}; s: next sort column, q: quit)",
        title_justify="left",
        caption=_more(len(rows), len(every), "actors"),
        caption_justify="left",
        box=None,
        header_style="bold",
    )
    columns = (
        *("group", "actor", "in/s", "out/s", "handled", "queued", "dropped", "failures"),
        *("handler p50", "handler p99", "latency p50", "latency p99", "alerts"),
    )
    widest = {  # names stay whole on a narrow terminal; the numbers give way first
        "group": max((cell_len(group.plain) for _, group, _ in rows), default=5),
        "actor": max((cell_len(actor.plain) for _, _, actor in rows), default=5),
    }
    for name in columns:
        label = f"{name}*" if name == sort else name
        if name in widest:
            table.add_column(label, justify="left", no_wrap=True, min_width=widest[name])
        else:
            table.add_column(label, justify="right")
    for a, group, actor in rows:
        table.add_row(
            group,
            actor + ("" if a.running else " (stopped)") + (" (stale)" if a.stale else ""),
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


def _notices(model: BusModel, limit: int | None) -> list[RenderableType]:
    lines: list[RenderableType] = []
    for hub, notice in sorted(model.slow.items()):
        lag = "?" if notice.lag_seconds is None else f"{notice.lag_seconds:.2f}"
        gaps = "?" if notice.gaps is None else str(notice.gaps)
        lines.append(Text(f"slow consumer: {printable(hub)} processing messages {lag}s old, {gaps} gaps"))
    for key in sorted(model.alerts):
        alert = model.alerts[key]
        change = alert.relative_change
        change_text = "new" if change is None else f"{change:+.1%}"
        lines.append(
            Text(
                f"profile alert: {printable(alert.function)} in actor {printable(alert.actor)} "
                f"(group {printable(alert.group)}): {printable(alert.share)} share {change_text}"
            )
        )
    if not lines:
        lines.append(Text("no slow consumers, no active profile alerts"))
    if limit is not None and len(lines) > limit:
        lines[limit:] = [Text(_more(limit, len(lines), "notices") or "")]
    return lines


def _status(model: BusModel, failures: str) -> Text:
    """The status line: what was heard, what was not kept (malformed, or no room), failed frames."""
    line = f"messages {model.messages}  ignored {model.ignored} (malformed, or a table full)"
    return Text(f"{line}  {failures}" if failures else line)


def render(model: BusModel, sort: str, failures: str = "", rows: int | None = None) -> RenderableType:
    """The whole frame: broker totals, the status line (``failures``: what :class:`Frames` says about
    frames that failed, if any), groups, actors, slow consumers and profile alerts. ``rows``: at most
    that many rows of each table and notices (the screen's height: drawing more only costs time)."""
    return Group(
        _broker(model),
        _status(model, failures),
        Text(""),
        _groups(model, rows),
        Text(""),
        _actors(model, sort, rows),
        Text(""),
        *_notices(model, rows),
    )


class Frames:
    """The live view's frames: one that fails to build or to draw is counted, the previous stays.

    ``draw`` builds a frame and hands it to ``show`` (``Live.update`` with a refresh, which renders
    it); an exception on the way is counted in :attr:`failures`, its text kept for the status line,
    and the last good frame is shown again under that line. The view goes on either way.
    """

    def __init__(self) -> None:
        self.failures = 0
        self.last_failure = ""
        self._good: RenderableType = Text("")

    @property
    def note(self) -> str:
        """The status line's words about failed frames; empty while none failed."""
        if not self.failures:
            return ""
        return f"frames failed {self.failures} (last: {self.last_failure})"

    def draw(
        self, model: BusModel, sort: str, show: Callable[[RenderableType], object], rows: int | None = None
    ) -> bool:
        """Show the current frame of ``model`` (``rows`` as :func:`render`); False when it failed and
        the previous one shows."""
        try:
            frame = render(model, sort, self.note, rows)
            show(frame)
        except Exception as exc:  # a frame that cannot be drawn never ends the view
            self.failures += 1
            self.last_failure = printable(f"{type(exc).__name__}: {exc}", 120)
            try:
                show(Group(Text(f"previous frame shown: {self.note}"), self._good))  # on top: seen
            except Exception:  # the previous frame no longer draws (a width change?): the note alone
                show(Text(self.note))
            return False
        self._good = frame
        return True


def plain_text(model: BusModel, sort: str, width: int = 200) -> str:
    """One frame as plain text (no colours, no cursor movement), for ``--once``."""
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None, no_color=True)
    console.print(render(model, sort))
    return out.getvalue()
