"""A service command's options with its ``--config FILE`` table and the environment filled in."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from observability import apply_service_config

AddParser = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def apply_command_config(
    args: argparse.Namespace,
    command: str,
    add_parser: AddParser,
    environ: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """``args`` of ``tickbus broker`` or ``tickbus profiler`` (``command``, whose options
    ``add_parser`` declares) with ``--config FILE``'s table and ``$TICKBUS_*`` applied: an option still
    at its default takes the environment's value, else the file's (see
    :func:`observability.apply_service_config`)."""
    parser = argparse.ArgumentParser(prog="tickbus")
    add_parser(parser.add_subparsers(dest="command"))
    defaults: dict[str, Any] = vars(parser.parse_args([command]))
    return apply_service_config(args, command, defaults, environ)
