"""The ``tickbus+pair`` and ``actors+pair`` systems: ``tickbus`` and ``actors`` through a broker pair.

Two brokers; every hub connects to both (``actors.connect(frontend=[A, B], backend=[A2, B2])``), so
every message crosses both and each subscriber drops the second copy (counted as ``redundant``).
Beside ``tickbus`` and ``actors`` in one run, this is the price of redundancy.
"""

from __future__ import annotations

from ._tickbus import PAIR_DRIVER as DRIVER

__all__ = ["DRIVER"]
