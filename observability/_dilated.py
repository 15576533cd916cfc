"""A time-dilated event loop for tests: loop time runs ``time_dilation`` times faster than real time.

``loop.time_dilation = 10`` makes ``await asyncio.sleep(1)`` take 0.1 s of real time; ``0.1`` makes
it take 10 s. Changing the dilation keeps loop time continuous.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class TimeDilatedLoop(asyncio.SelectorEventLoop):
    """An asyncio selector loop whose clock runs ``time_dilation`` times as fast as the real one."""

    def __init__(self, time_dilation: float = 1.0) -> None:
        super().__init__()
        self._dilation = time_dilation
        self._real_anchor = super().time()
        self._loop_anchor = self._real_anchor
        real_select = self._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is not None and timeout > 0:
                timeout = timeout / self._dilation
            result: Any = real_select(timeout)
            return result  # type: ignore[no-any-return]

        self._selector.select = select  # type: ignore[attr-defined]

    @property
    def time_dilation(self) -> float:
        """How many loop seconds pass per real second."""
        return self._dilation

    @time_dilation.setter
    def time_dilation(self, value: float) -> None:
        if value <= 0:
            raise ValueError(f"time_dilation must be positive, got {value}")
        now_real = super().time()
        self._loop_anchor = self._loop_anchor + (now_real - self._real_anchor) * self._dilation
        self._real_anchor = now_real
        self._dilation = value

    def time(self) -> float:
        """Dilated loop time."""
        return self._loop_anchor + (super().time() - self._real_anchor) * self._dilation
