"""``tickbus trace``: list the traces under the data directory and show one as a timeline.

- ``tickbus trace list [--service NAME ...] [--limit N] [--data-dir DIR]``: the most recent traces
  (oldest of them first), with their span count, duration, services and root span;
- ``tickbus trace show TRACE_ID [--data-dir DIR]``: one trace (a unique id prefix will do).

The reading and rendering live in :mod:`._trace_view`, imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``trace`` subcommand to the ``tickbus`` parser."""
    trace = subparsers.add_parser(
        "trace",
        help="list or show the traces that tickbus processes wrote",
        description="Read the OTLP JSON trace files under <data dir>/traces (written by `tickbus run` with "
        "tracing on) and print them.",
    )
    actions = trace.add_subparsers(dest="trace_command", required=True, metavar="ACTION")
    data_help = "directory holding traces/*.jsonl (default $TICKBUS_DATA_DIR, else ~/.local/state/tickbus)"
    listing = actions.add_parser("list", help="recent trace ids with their root span and span count")
    listing.add_argument("--data-dir", metavar="DIR", help=data_help)
    listing.add_argument("--limit", type=int, default=20, metavar="N", help="show the N most recent (20)")
    listing.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="NAME",
        help="only traces crossing this service (repeat for several)",
    )
    show = actions.add_parser("show", help="one trace as an indented timeline")
    show.add_argument("trace_id", metavar="TRACE_ID", help="32 hex digits, or a unique prefix")
    show.add_argument("--data-dir", metavar="DIR", help=data_help)


def run(args: argparse.Namespace) -> int:
    """Run ``tickbus trace list`` or ``tickbus trace show``; raises TracingError on bad input."""
    from observability import find_trace, list_traces, render_list, render_trace

    if args.trace_command == "show":
        lines = render_trace(find_trace(args.data_dir, args.trace_id))
    else:
        summaries = list_traces(args.data_dir, services=args.service)
        lines = render_list(summaries[-args.limit :] if args.limit > 0 else summaries)
        if not summaries:
            lines.append("(no traces)")
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # `tickbus trace list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    return 0
