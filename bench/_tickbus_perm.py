"""The ``tickbus+perm`` system: see :mod:`bench._tickbus_checked`."""

from __future__ import annotations

from ._tickbus_checked import CHECKED_DRIVER as DRIVER

__all__ = ["DRIVER"]
