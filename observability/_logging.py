"""Logging setup: the only place in tickbus that configures loguru sinks.

Human-readable coloured lines on a terminal; JSON lines (loguru's ``serialize``) otherwise, which
journald and log shippers take as they are. The sink enqueues, so a slow sink never blocks the loop.
"""

from __future__ import annotations

import os
import sys

from loguru import logger

_HUMAN = (
    "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> <cyan>{extra[process]}</cyan> {message}"
)


def configure_logging(
    process: str = "tickbus", *, level: str | None = None, json: bool | None = None
) -> None:
    """Send loguru output to stderr: coloured on a TTY, JSON lines otherwise.

    ``level`` defaults to ``$TICKBUS_LOG_LEVEL`` or INFO; ``json`` to ``$TICKBUS_LOG_JSON`` (``1``/``0``),
    else JSON when stderr is not a terminal.
    """
    level = level or os.environ.get("TICKBUS_LOG_LEVEL", "INFO")
    if json is None:
        flag = os.environ.get("TICKBUS_LOG_JSON")
        json = (flag == "1") if flag in ("0", "1") else not sys.stderr.isatty()
    logger.remove()
    logger.configure(extra={"process": process, "pid": os.getpid()})
    if json:
        logger.add(sys.stderr, level=level, serialize=True, enqueue=True)
    else:
        logger.add(sys.stderr, level=level, format=_HUMAN, colorize=None, enqueue=True)
