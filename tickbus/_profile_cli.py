"""``tickbus profile diff|export|report|status``: compare, export and report stored profiles.

``status`` says per group how many windows the regression detector has and needs before it tests
the group, and when that will be (windows still missing times the window length), from the store.

Selection, common to the three: ``--actor`` (group or actor name; optional when the store holds one
group), and either two versions (``--versions OLD NEW``), two time ranges (``--before FROM TO --after
FROM TO``, each time seconds since the epoch or a local ISO date-time), or by default the last
``--last N`` windows split into an older and a newer half. ``export`` takes one side: ``--version``,
``--range FROM TO`` or ``--last N``. Exit code 1 with a message when a side has no windows.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from observability.profiling import ProfileStore, ProfileWindow, WindowSummary

FORMATS = ("speedscope", "collapsed", "pprof")


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give seconds since the epoch or an ISO date-time like 2026-11-24T18:00"
        ) from None


def add_view_parsers(
    queries: argparse._SubParsersAction[argparse.ArgumentParser],
    add_data_dir: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``diff``, ``export`` and ``report`` to ``tickbus profile``."""
    status = queries.add_parser(
        "status", help="per group: windows collected / needed before regression detection, and when"
    )
    status.add_argument("--actor", help="only this group or actor name")
    add_data_dir(status)
    diff = queries.add_parser("diff", help="function shares of two versions or time ranges, side by side")
    report = queries.add_parser("report", help="write an HTML report with a differential flame graph")
    export = queries.add_parser("export", help="write windows as speedscope JSON, collapsed stacks or pprof")
    for sub in (diff, report, export):
        sub.add_argument("--actor", help="group or actor name (needed when the store holds several groups)")
        sub.add_argument("--last", type=int, default=20, metavar="N", help="last N windows (default 20)")
        add_data_dir(sub)
    for sub in (diff, report):
        sub.add_argument("--versions", nargs=2, metavar=("OLD", "NEW"), help="compare two versions")
        sub.add_argument("--before", nargs=2, type=_time, metavar=("FROM", "TO"), help="the older range")
        sub.add_argument("--after", nargs=2, type=_time, metavar=("FROM", "TO"), help="the newer range")
    diff.add_argument("--limit", type=int, default=20, metavar="N", help="functions to show (default 20)")
    report.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    report.add_argument("--alerts-file", type=Path, help="alerts to show (default <data-dir>/alerts.jsonl)")
    export.add_argument("--format", choices=FORMATS, default="speedscope", help="default speedscope")
    export.add_argument("--version", help="only windows of this version")
    export.add_argument("--range", nargs=2, type=_time, metavar=("FROM", "TO"), help="only this time range")
    export.add_argument("-o", "--output", type=Path, help="file to write (default stdout; pprof needs one)")
    export.add_argument(
        "--interval-us", type=int, default=10_000, help="the sampling interval, for pprof's CPU values"
    )


class SelectionError(Exception):
    """A side of the comparison has no windows, or the actor is ambiguous (exit code 1)."""


def _group_summaries(store: ProfileStore, actor: str | None) -> tuple[str, list[WindowSummary]]:
    summaries = store.summaries(actor=actor)
    groups = sorted({s.group for s in summaries})
    if not groups:
        raise SelectionError(f"no windows{f' of {actor!r}' if actor else ''} in {store.path}")
    if len(groups) > 1 and actor is None:
        from observability import printable  # group names came from announcements: peer text

        raise SelectionError(
            f"{store.path} holds several groups ({', '.join(printable(g, 64) for g in groups)}); "
            "pick one with --actor"
        )
    return actor or groups[0], summaries


def _side(
    summaries: list[WindowSummary], name: str, keep: Callable[[WindowSummary], bool], what: str
) -> list[WindowSummary]:
    chosen = [s for s in summaries if keep(s)]
    if not chosen:
        raise SelectionError(f"no windows of {name!r} {what}")
    return chosen


def _stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def select_pair(
    store: ProfileStore, args: argparse.Namespace
) -> tuple[str, list[WindowSummary], str, list[WindowSummary], str]:
    """(actor, before summaries, before name, after summaries, after name) chosen by ``args``."""
    name, summaries = _group_summaries(store, args.actor)
    if args.versions:
        old, new = args.versions
        before = _side(summaries, name, lambda s: s.version == old, f"in version {old!r}")
        after = _side(summaries, name, lambda s: s.version == new, f"in version {new!r}")
        return name, before, f"version {old}", after, f"version {new}"
    if args.before or args.after:
        if not (args.before and args.after):
            raise SelectionError("give both --before FROM TO and --after FROM TO")
        (b0, b1), (a0, a1) = args.before, args.after
        before = _side(
            summaries, name, lambda s: b0 <= s.start and s.end <= b1, f"between {_stamp(b0)} and {_stamp(b1)}"
        )
        after = _side(
            summaries, name, lambda s: a0 <= s.start and s.end <= a1, f"between {_stamp(a0)} and {_stamp(a1)}"
        )
    else:
        recent = summaries[-max(2, args.last) :]
        if len(recent) < 2:
            raise SelectionError(f"need at least two windows of {name!r} to compare, found {len(recent)}")
        half = len(recent) // 2
        before, after = recent[:half], recent[half:]
    return (
        name,
        before,
        f"{len(before)} window(s) from {_stamp(before[0].start)} to {_stamp(before[-1].end)}",
        after,
        f"{len(after)} window(s) from {_stamp(after[0].start)} to {_stamp(after[-1].end)}",
    )


def _merged(store: ProfileStore, chosen: list[WindowSummary]) -> ProfileWindow:
    from observability.profiling import merge_windows

    return merge_windows(store.load([s.id for s in chosen]))


def _alerts(path: Path, name: str, since: float) -> list[dict[str, Any]]:
    """The alerts of ``name`` detected since ``since``, from the alerts file and the files it rotated
    out that were written to since then."""
    from observability import rotated_files

    lines: list[str] = []
    for file in [*rotated_files(path), path]:
        try:
            if file is not path and file.stat().st_mtime < since:
                continue
            lines += file.read_text().splitlines()
        except OSError:
            continue
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and name in (record.get("actor"), record.get("group"))
            and float(record.get("detected_at", 0)) >= since
        ):
            found.append(record)
    return found


def run_view(args: argparse.Namespace) -> int:
    """Run ``tickbus profile diff|export|report``; the exit code."""
    from observability.profiling import ProfileStore, default_store_path, merge_windows

    path = default_store_path(args.data_dir)
    try:
        with ProfileStore(path, create=False) as store:
            if args.profile_command == "status":
                return _status(store, args.actor)
            if args.profile_command == "export":
                return _export(store, args)
            name, before, before_name, after, after_name = select_pair(store, args)
            before_windows = store.load([s.id for s in before])
            old, new = merge_windows(before_windows), _merged(store, after)
    except SelectionError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.profile_command == "diff":
        from observability.profiling import format_diff

        print(
            format_diff(
                old,
                new,
                before_name=before_name,
                after_name=after_name,
                limit=args.limit,
                before_windows=before_windows,
            )
        )
        return 0
    from observability.profiling import render_report

    alerts_path = args.alerts_file or path.with_name("alerts.jsonl")
    page = render_report(
        old,
        new,
        title=f"tickbus profile of {name}",
        before_name=before_name,
        after_name=after_name,
        alerts=_alerts(alerts_path, name, after[0].start - 3600 * 24),
        before_windows=before_windows,
    )
    try:
        args.output.write_text(page, encoding="utf-8")
    except OSError as exc:  # a full disk, a missing or read-only directory: say so, no traceback
        print(f"cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


def _status(store: ProfileStore, actor: str | None) -> int:
    """``tickbus profile status``: each group's detection readiness, replayed from its stored windows."""
    import statistics
    import time

    from observability.profiling import DetectionConfig, GroupStatus, RegressionDetector, format_status

    summaries = store.summaries(actor=actor)
    if not summaries:
        raise SelectionError(f"no windows{f' of {actor!r}' if actor else ''} in {store.path}")
    config = DetectionConfig()  # the collector's defaults: what it would need
    keep = 2 * (config.baseline_windows + config.max_pool)
    statuses = []
    for host, group in sorted({(s.host, s.group) for s in summaries}):
        mine = [s for s in summaries if (s.host, s.group) == (host, group)][-keep:]
        detector = RegressionDetector(config)
        detector.seed(store.load([s.id for s in mine]))
        lengths = [s.end - s.start for s in mine]
        statuses.append(
            GroupStatus(
                detector.readiness(host, group),
                version=mine[-1].version,
                window=max(lengths) if len(lengths) < 3 else statistics.median(lengths),
                last_end=mine[-1].end,
            )
        )
    print(format_status(statuses, time.time()))
    return 0


def _export(store: ProfileStore, args: argparse.Namespace) -> int:
    from observability.profiling import export

    name, summaries = _group_summaries(store, args.actor)
    if args.version is not None:
        chosen = _side(summaries, name, lambda s: s.version == args.version, f"in version {args.version!r}")
    elif args.range:
        t0, t1 = args.range
        chosen = _side(summaries, name, lambda s: t0 <= s.start and s.end <= t1, "in that range")
    else:
        chosen = summaries[-max(1, args.last) :]
    if args.format == "pprof" and args.output is None:
        raise SelectionError("pprof is binary: give --output FILE")
    data = export(_merged(store, chosen), args.format, name=name, interval_us=args.interval_us)
    if args.output is None:
        sys.stdout.write(data.decode())
    else:
        args.output.write_bytes(data)
        print(f"wrote {args.output} ({len(chosen)} window(s) of {name}, {args.format})")
    return 0
