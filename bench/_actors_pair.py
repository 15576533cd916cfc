"""The ``actors+pair`` system: see :mod:`bench._tickbus_pair`."""

from __future__ import annotations

from ._tickbus_actors import PAIR_DRIVER as DRIVER

__all__ = ["DRIVER"]
