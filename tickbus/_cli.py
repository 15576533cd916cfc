"""The ``tickbus`` command: one console script, one subcommand per job.

- ``tickbus broker``: run a broker (see ``tickbus broker --help``);
- ``tickbus run module:Class [...]`` or ``tickbus run --config group.toml``: run actors;
- ``tickbus profiler``: profile this host's actor processes continuously with Austin;
- ``tickbus profile windows|top``: query the stored profiles;
- ``tickbus trace list|show``: read the traces under the data directory;
- ``tickbus top``: a live view of the bus from the statistics it publishes (``--once``: one frame);
- ``tickbus deploy install --prefix /``: write the systemd units, configs and env files;
- ``tickbus version``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from observability import ConnectError, TickbusError

if TYPE_CHECKING:
    from actors import GroupConfig

_SERVICES = ("run", "broker", "profiler")
EX_UNAVAILABLE = 69  # sysexits.h: a service (here: every broker) is unavailable
"""Commands that run as services (systemd units): their startup failures are log records."""


def _add_run(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="run one or more actors in this process",
        description="Run actors (module:Class, subclasses of actors.Actor) connected to a tickbus broker. "
        "SIGTERM/SIGINT drain queued messages within --drain-timeout, then exit 0.",
    )
    run.add_argument("targets", nargs="*", metavar="module:Class", help="actor classes to run")
    run.add_argument(
        "--config", metavar="FILE", help="group TOML file (see actors._config); flags override it"
    )
    run.add_argument("--name", help="group name, used in logs and publisher ids (default: actors)")
    run.add_argument(
        "--frontend", help="broker frontend URL (default $TICKBUS_FRONTEND or tcp://127.0.0.1:5550)"
    )
    run.add_argument(
        "--backend", help="broker backend URL (default $TICKBUS_BACKEND or tcp://127.0.0.1:5551)"
    )
    run.add_argument(
        "--drain-timeout", type=float, help="seconds to finish queued messages on stop (default 5)"
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (default $TICKBUS_METRICS_PORT; 0: off)",
    )


def group_config(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> GroupConfig:
    """The group ``tickbus run`` runs: the file (``--config``), over it the ``TICKBUS_*`` variables,
    over both the flags (so ``--frontend A,B`` wins over a ``$TICKBUS_FRONTEND`` naming one broker)."""
    from actors import GroupConfig, group_from_flags, load_group_config

    base = load_group_config(args.config) if args.config else GroupConfig(actors=())
    base = base.with_environment(environ)
    flags = group_from_flags(  # validated like the file
        args.targets or [a.target for a in base.actors],
        name=args.name,
        frontend=args.frontend,
        backend=args.backend,
        drain_timeout=args.drain_timeout,
    )
    given = {"name": args.name, "frontend": args.frontend, "backend": args.backend}
    changes: dict[str, Any] = {attr: getattr(flags, attr) for attr, value in given.items() if value}
    if args.drain_timeout is not None:
        changes["drain_timeout"] = flags.drain_timeout
    if args.targets or not args.config:
        changes["actors"] = flags.actors
    return dataclasses.replace(base, **changes)


def _run(args: argparse.Namespace) -> int:
    from actors import serve_group
    from observability import configure_logging

    # Like `python -m`: actor packages in the current directory import (a console script's sys.path[0]
    # is its bin directory, not the directory it was started from).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    config = group_config(args)
    configure_logging(config.name)
    return serve_group(config, metrics_port=args.metrics_port, environment=False)


def build_parser() -> argparse.ArgumentParser:
    """The full ``tickbus`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="tickbus", description="tickbus: asyncio actors over a ZeroMQ broker"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from ._broker_cli import add_parser as add_broker

    add_broker(subparsers)
    _add_run(subparsers)
    from ._profiler_cli import add_parsers as add_profiler

    add_profiler(subparsers)
    from ._trace_cli import add_parser as add_trace

    add_trace(subparsers)
    from ._top_cli import add_parser as add_top

    add_top(subparsers)
    from ._deploy import add_parser as add_deploy

    add_deploy(subparsers)
    from ._keys_cli import add_parser as add_keys

    add_keys(subparsers)
    subparsers.add_parser("version", help="print the tickbus version")
    from actors import version

    parser.add_argument("--version", action="version", version=f"tickbus {version()}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911  (one return per subcommand)
    """Entry point of the ``tickbus`` console script."""
    args = build_parser().parse_args(argv)
    from actors import watch_parent

    watch_parent()  # launched by actors.testing: end with the launcher, however it ends
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "broker":
            from ._broker_cli import run as run_broker

            return run_broker(args)
        if args.command in ("profiler", "profile"):
            from ._profiler_cli import run as run_profiler

            return run_profiler(args)
        if args.command == "trace":
            from ._trace_cli import run as run_trace

            return run_trace(args)
        if args.command == "top":
            from ._top_cli import run as run_top

            return run_top(args)
        if args.command == "deploy":
            from ._deploy import run as run_deploy

            return run_deploy(args)
        if args.command == "keys":
            from ._keys_cli import run as run_keys

            return run_keys(args)
        if args.command == "version":
            from actors import version

            print(version())
            return 0
    except TickbusError as exc:  # one tree: actors', broker's and observability's errors
        # 2: a configuration error, which a restart cannot fix (the units do not restart it);
        # 69 (EX_UNAVAILABLE): no broker answered, which a restart may (the units restart it)
        status = EX_UNAVAILABLE if isinstance(exc, ConnectError) else 2
        if args.command in _SERVICES:  # one log line: JSON in the journal, like the service's others
            from observability import log_failure

            log_failure(f"tickbus {args.command}: {exc}", exc, exit_status=status)
        else:
            print(f"tickbus {args.command}: {exc}", file=sys.stderr)
        return status
    raise AssertionError(f"unhandled command {args.command}")
