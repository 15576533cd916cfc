"""The ``actors+obs`` system: see :mod:`bench._tickbus_actors`."""

from __future__ import annotations

from ._tickbus_actors import OBSERVED_DRIVER as DRIVER

__all__ = ["DRIVER"]
