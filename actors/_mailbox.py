"""A bounded mailbox: the queue behind ``Subscriber.consume()`` and actor handlers.

``put`` never blocks and never raises: when the mailbox is full it drops one message, counts it and
returns. The default policy drops the **oldest** queued message (market data: the newest tick is
the one worth having); ``overflow="drop_newest"`` drops the incoming one instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Overflow = Literal["drop_oldest", "drop_newest"]


class Mailbox(Generic[T]):
    """Bounded FIFO with drop-on-overflow, for one asyncio loop."""

    __slots__ = ("_drop_newest", "_items", "_maxsize", "_waiters", "delivered", "dropped")

    def __init__(self, maxsize: int = 10_000, overflow: Overflow = "drop_oldest") -> None:
        if maxsize < 1:
            raise ValueError(f"mailbox size must be at least 1, got {maxsize}")
        if overflow not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"overflow policy {overflow!r} is not 'drop_oldest' or 'drop_newest'")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._drop_newest = overflow == "drop_newest"
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.dropped = 0
        self.delivered = 0

    @property
    def items(self) -> deque[T]:
        """The queue itself, for a hot path's emptiness check (read only: put and get keep the counts)."""
        return self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def maxsize(self) -> int:
        """Capacity before overflow drops start."""
        return self._maxsize

    def put(self, item: T) -> bool:
        """Queue ``item``; False when the overflow policy dropped a message (this one or the oldest)."""
        items = self._items
        accepted = True
        if len(items) >= self._maxsize:
            self.dropped += 1
            if self._drop_newest:
                return False
            items.popleft()
            accepted = False
        items.append(item)
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        return accepted

    def get_nowait(self) -> T:
        """The oldest item; raises ``IndexError`` when empty."""
        item = self._items.popleft()
        self.delivered += 1
        return item

    async def get(self) -> T:
        """Wait for and return the oldest item."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # pass the wake-up on if we were woken and cancelled at once
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake_one()
                raise
        return self.get_nowait()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def __bool__(self) -> bool:
        return bool(self._items)

    async def wait(self) -> None:
        """Wait until an item is queued or :meth:`put_wakeup` is called (may return spuriously)."""
        if self._items:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def put_wakeup(self) -> None:
        """Wake every waiter without queueing anything (used to stop a consumer)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> int:
        """Drop everything queued (not counted as overflow); return how many."""
        n = len(self._items)
        self._items.clear()
        return n
