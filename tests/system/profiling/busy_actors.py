"""An actor that burns CPU in its handler, for the profiling collector's integration test."""

from __future__ import annotations

import time
from typing import Any

from actors import Actor, Key, handler


class Busy(Actor):
    """Spins ~5 ms of CPU per ``('work', *)`` message, in the handler's own code."""

    name = "busy"

    @handler(("work", "*"))
    def burn_cpu_in_busy_handler(self, key: Key, payload: Any) -> None:
        deadline = time.perf_counter() + 0.005
        spins = 0
        while time.perf_counter() < deadline:
            spins += 1
