"""Views of stored profiles: a diff table and exports (speedscope JSON, collapsed stacks, pprof).

Pure functions of :class:`~observability.profiling._windows.ProfileWindow` objects (usually one merged window
per side); ``tickbus profile diff|export`` (:mod:`tickbus._profile_cli`) calls them.

- **collapsed**: ``outer;...;leaf count`` per line, Brendan Gregg's format for ``flamegraph.pl``.
- **speedscope**: the "sampled" profile of speedscope's file format (one stack of frame indices per
  distinct stack, weighted by its count), openable at speedscope.app or offline.
- **pprof**: the ``perftools.profiles.Profile`` protobuf, gzip-compressed, written by hand on the
  protobuf wire format (only varints and length-delimited fields are needed), so no generated code
  and no protobuf 4 (austin-python pins protobuf 3): ``go tool pprof -top profile.pb.gz`` reads it.
  Values are ``samples/count`` and ``cpu/nanoseconds`` (samples times the sampling interval).

The group, host and version names in the tables were chosen by whoever announced the group on the
bus: they are printed through :func:`observability.printable` (no control character reaches the
terminal).
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._text import printable
from ._regression_stats import benjamini_hochberg, dispersion, normal_sf, rise_z
from ._store import WindowSummary
from ._windows import FRAME_SEPARATOR, ProfileWindow

if TYPE_CHECKING:
    from ._detection import Readiness

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def split_label(label: str) -> tuple[str, str]:
    """``(file, function)`` of a frame label ``file:function``."""
    file, sep, function = label.rpartition(":")
    return (file, function) if sep else ("", label)


# -- diff ---------------------------------------------------------------------------------------
DIFF_ALPHA = 0.01  # false discovery rate of the changes a diff marks significant
NOT_SIGNIFICANT = "~"


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One function's shares before and after, its self samples, and whether the change is significant."""

    function: str
    before_self: float
    after_self: float
    before_inclusive: float
    after_inclusive: float
    before_samples: int = 0  # self samples
    after_samples: int = 0
    significant: bool = True
    q_value: float = 0.0

    @property
    def change(self) -> float:
        """Change of the self share, in share points."""
        return self.after_self - self.before_self


def diff(
    before: ProfileWindow,
    after: ProfileWindow,
    *,
    before_windows: Sequence[ProfileWindow] = (),
    alpha: float = DIFF_ALPHA,
) -> list[DiffRow]:
    """Every function's self and inclusive share on both sides, largest self-share change first.

    Each self-share change is tested as the regression detector tests a rise (two-sided here): a
    two-proportion z-test on the sample counts, its variance inflated by the function's
    over-dispersion across ``before_windows`` (the unmerged windows of the before side; none: plain
    binomial, which overstates significance when samples come in runs), at least the median
    function's, then Benjamini-Hochberg over all functions at ``alpha``. 1 sample to 6 is noise.
    """
    total_b = sum(before.stacks.values())
    total_a = sum(after.stacks.values())
    own_b, own_a = before.self_counts(), after.self_counts()
    inc_b, inc_a = before.inclusive_counts(), after.inclusive_counts()
    functions = sorted(set(inc_b) | set(inc_a))
    per_window = [(w.self_counts(), sum(w.stacks.values())) for w in before_windows]
    phis = {
        f: dispersion([c[f] for c, _ in per_window], [t for _, t in per_window])
        if len(per_window) > 1
        else 1.0
        for f in functions
    }
    floor = max(1.0, statistics.median(phis.values())) if phis else 1.0
    p_values = [
        min(1.0, 2 * normal_sf(abs(rise_z(own_a[f], total_a, own_b[f], total_b, max(floor, phis[f])))))
        for f in functions
    ]
    q_values = benjamini_hochberg(p_values)
    tb, ta = total_b or 1, total_a or 1
    rows = [
        DiffRow(
            f, own_b[f] / tb, own_a[f] / ta, inc_b[f] / tb, inc_a[f] / ta, own_b[f], own_a[f], q <= alpha, q
        )
        for f, q in zip(functions, q_values, strict=True)
    ]
    rows.sort(key=lambda r: (-abs(r.change), -abs(r.after_inclusive - r.before_inclusive), r.function))
    return rows


def format_change(row: DiffRow) -> str:
    """The relative change of the self share, ``~`` in front when it is not significant."""
    text = _relative(row.before_self, row.after_self)
    if text == "-" or row.significant:
        return text
    return f"{NOT_SIGNIFICANT}{text}"


def significance_legend(rows: Sequence[DiffRow], before_windows: int) -> str:
    """The line that explains ``~``; empty when no row of ``rows`` carries it."""
    if all(r.significant or format_change(r) == "-" for r in rows):
        return ""
    noise = "over-dispersion across the before windows" if before_windows > 1 else "binomial noise only"
    return (
        f"{NOT_SIGNIFICANT} not significant: within sampling noise for the self samples shown "
        f"(false discovery rate {DIFF_ALPHA:g}, allowing for {noise})"
    )


def _relative(before: float, after: float) -> str:
    if before == 0:
        return "new" if after else "-"
    return f"{after / before - 1:+.1%}"


def format_diff(
    before: ProfileWindow,
    after: ProfileWindow,
    *,
    before_name: str,
    after_name: str,
    limit: int = 20,
    before_windows: Sequence[ProfileWindow] = (),
) -> str:
    """The ``tickbus profile diff`` report: a head line per side, the table of changes, the legend."""
    head = [
        f"before: {before_name}: {before.samples} samples, {before.handled_total} handled",
        f"after:  {after_name}: {after.samples} samples, {after.handled_total} handled",
    ]
    rows: list[tuple[str, ...]] = [
        ("SELF BEFORE", "SELF AFTER", "CHANGE", "SELF N", "INCL BEFORE", "INCL AFTER", "FUNCTION")
    ]
    shown = diff(before, after, before_windows=before_windows)[: max(0, limit)]
    for r in shown:
        rows.append(
            (
                f"{r.before_self:.1%}",
                f"{r.after_self:.1%}",
                format_change(r),
                f"{r.before_samples}->{r.after_samples}",
                f"{r.before_inclusive:.1%}",
                f"{r.after_inclusive:.1%}",
                short_function(r.function),
            )
        )
    legend = significance_legend(shown, len(before_windows))
    return "\n".join(head) + "\n" + table(rows) + (f"\n{legend}" if legend else "")


# -- exports ------------------------------------------------------------------------------------
def to_collapsed(window: ProfileWindow) -> str:
    """Collapsed stacks for ``flamegraph.pl``: ``a;b;c 12`` per line, most frequent first."""
    ordered = sorted(window.stacks.items(), key=lambda item: (-item[1], item[0]))
    return "".join(f"{stack} {count}\n" for stack, count in ordered)


def to_speedscope(window: ProfileWindow, name: str) -> dict[str, Any]:
    """A speedscope file (``sampled`` profile, weights in samples)."""
    index: dict[str, int] = {}
    frames: list[dict[str, str]] = []
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, count in sorted(window.stacks.items()):
        ids = []
        for label in stack.split(FRAME_SEPARATOR):
            if label not in index:
                index[label] = len(frames)
                file, function = split_label(label)
                frames.append({"name": function, "file": file})
            ids.append(index[label])
        samples.append(ids)
        weights.append(count)
    total = sum(weights)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "name": name,
        "exporter": "tickbus profile export",
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            }
        ],
    }


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 values are two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _packed(number: int, values: Iterable[int]) -> bytes:
    return _field_bytes(number, b"".join(_varint(v) for v in values))


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = [""]
        self._index: dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.table)
            self.table.append(text)
        return self._index[text]


def to_pprof(window: ProfileWindow, interval_us: int = 10_000) -> bytes:
    """The window as a gzip-compressed pprof ``Profile`` (see the module docstring)."""
    strings = _Strings()
    body = bytearray()
    for kind, unit in (("samples", "count"), ("cpu", "nanoseconds")):
        body += _field_bytes(1, _field_varint(1, strings(kind)) + _field_varint(2, strings(unit)))
    locations: dict[str, int] = {}
    for stack, count in sorted(window.stacks.items()):
        ids = []
        for label in reversed(stack.split(FRAME_SEPARATOR)):  # pprof: leaf first
            if label not in locations:
                locations[label] = len(locations) + 1
            ids.append(locations[label])
        sample = _packed(1, ids) + _packed(2, [count, count * interval_us * 1000])
        body += _field_bytes(2, sample)
    for ident in locations.values():  # location i has function i, one line each
        body += _field_bytes(4, _field_varint(1, ident) + _field_bytes(4, _field_varint(1, ident)))
    for label, ident in locations.items():
        file, function = split_label(label)
        fn = _field_varint(1, ident) + _field_varint(2, strings(function))
        fn += _field_varint(3, strings(function)) + _field_varint(4, strings(file))
        body += _field_bytes(5, fn)
    tail = _field_varint(9, int(window.start * 1e9)) + _field_varint(
        10, int((window.end - window.start) * 1e9)
    )
    tail += _field_bytes(11, _field_varint(1, strings("cpu")) + _field_varint(2, strings("nanoseconds")))
    tail += _field_varint(12, interval_us * 1000)
    table = b"".join(_field_bytes(6, s.encode()) for s in strings.table)  # after the last strings() call
    return gzip.compress(bytes(body) + table + tail)


def export(window: ProfileWindow, fmt: str, *, name: str, interval_us: int = 10_000) -> bytes:
    """``window`` in ``fmt`` (``speedscope``, ``collapsed`` or ``pprof``) as bytes to write."""
    if fmt == "collapsed":
        return to_collapsed(window).encode()
    if fmt == "speedscope":
        return json.dumps(to_speedscope(window, name)).encode()
    if fmt == "pprof":
        return to_pprof(window, interval_us)
    raise ValueError(f"unknown export format {fmt!r}; use speedscope, collapsed or pprof")


def short_function(label: str) -> str:
    """``file:function`` with the file shortened: below site-packages, the cwd, or its last two parts."""
    file, sep, function = label.rpartition(":")
    if not sep:
        return label
    if "site-packages/" in file:
        file = file.rpartition("site-packages/")[2]
    else:
        path = Path(file)
        try:
            file = str(path.relative_to(Path.cwd()))
        except ValueError:
            file = "/".join(path.parts[-2:]) if path.is_absolute() else file
    return f"{function} ({file})"


def format_windows(summaries: list[WindowSummary], windows: list[ProfileWindow]) -> str:
    """The ``tickbus profile windows`` table; ``windows`` are the loaded ``summaries``, same order."""
    rows: list[tuple[str, ...]] = [
        ("ID", "START", "SECONDS", "GROUP", "PID", "VERSION", "SAMPLES", "HANDLED", "TOP SELF")
    ]
    for summary, window in zip(summaries, windows, strict=True):
        shares = window.function_shares()
        top = f"{shares[0].self_share:6.1%} {short_function(shares[0].function)}" if shares else "-"
        rows.append(
            (
                str(summary.id),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary.start)),
                f"{summary.end - summary.start:.1f}",
                printable(summary.group, 64),
                str(summary.pid),
                printable(summary.version, 64) or "-",
                str(summary.samples),
                str(summary.handled),
                top,
            )
        )
    return table(rows)


def format_top(
    window: ProfileWindow, count: int, *, groups: list[str] | None = None, limit: int = 20, by: str = "self"
) -> str:
    """The ``tickbus profile top`` report of a merged window of ``count`` windows of ``groups``."""
    labels = window.labels
    groups = groups or [labels.group]
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(window.start))
    per_message = (
        f", {window.cpu_us / window.handled_total:.0f} µs CPU per message" if window.handled_total else ""
    )
    head = (
        f"{count} window(s) of group {', '.join(printable(g, 64) for g in groups)} (latest pid {labels.pid}, "
        f"version {printable(labels.version, 64) or '-'}) "
        f"from {started} over {window.end - window.start:.0f}s: {window.samples} samples, "
        f"{window.cpu_us / 1e6:.2f}s CPU, {window.handled_total} messages handled{per_message}"
    )
    shares = window.function_shares()
    if by == "inclusive":
        shares.sort(key=lambda s: (-s.inclusive_samples, -s.self_samples, s.function))
    rows: list[tuple[str, ...]] = [("SELF", "INCL", "SELF N", "INCL N", "FUNCTION")]
    rows += [
        (
            f"{s.self_share:.1%}",
            f"{s.inclusive_share:.1%}",
            str(s.self_samples),
            str(s.inclusive_samples),
            short_function(s.function),
        )
        for s in shares[: max(0, limit)]
    ]
    return head + "\n" + table(rows)


def table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns (the first row is the heading)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


# -- detection status -----------------------------------------------------------------------------
def format_duration(seconds: float) -> str:
    """``40 s``, ``4 min 20 s``, ``2 h 5 min``: how long until something, for people."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """One group's detection readiness as ``tickbus profile status`` shows it."""

    readiness: Readiness
    version: str
    window: float  # seconds, the group's usual window length
    last_end: float  # end of its latest stored window


def format_status(statuses: Sequence[GroupStatus], now: float) -> str:
    """The ``tickbus profile status`` table: per group, windows collected / needed and when detection
    will be ready (an estimate: the windows still missing times the window length, from the last one)."""
    rows: list[tuple[str, ...]] = [("GROUP", "HOST", "VERSION", "WINDOWS", "DETECTION", "LAST WINDOW")]
    for st in statuses:
        r = st.readiness
        if r.ready:
            detection = "ready: every new window is tested"
        else:
            eta = st.last_end + r.remaining * st.window - now
            detection = (
                f"in ~{format_duration(eta)} ({r.remaining} more window(s) of {st.window:g}s)"
                if eta > 0
                else f"waiting for {r.remaining} more window(s): is the collector running?"
            )
        if r.thin:
            detection += f"; {r.thin} window(s) with too few samples ignored"
        ago = format_duration(now - st.last_end)
        rows.append(
            (
                printable(r.group, 64),
                printable(r.host, 64),
                printable(st.version, 64) or "-",
                f"{r.collected}/{r.needed}",
                detection,
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.last_end))} ({ago} ago)",
            )
        )
    return table(rows)
