"""tickbus observability: logging now; traces, metrics, loop health and profiling to come.

Only this package configures loguru sinks; the rest of tickbus calls ``logger`` lazily.
"""

from ._logging import configure_logging

__all__ = ["configure_logging"]
