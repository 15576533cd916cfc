"""The decorators that mark an :class:`~actors.Actor`'s methods: :func:`handler` and :func:`every`.

They only set attributes on the function; the actor reads them when it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from broker import Key, PossibleKey

F = TypeVar("F", bound=Callable[..., Any])
PATTERNS_ATTR = "__tickbus_patterns__"
SNAPSHOT_ATTR = "__tickbus_snapshot__"
EVERY_ATTR = "__tickbus_every__"


def handler(*patterns: PossibleKey, snapshot: bool = False) -> Callable[[F], F]:
    """Declare a method ``(self, key, payload)`` (sync or async) as the handler of ``patterns``.

    With ``snapshot=True`` the handler first gets the latest message of every matching key from the
    broker's last-value cache, then the live stream, nothing missed or applied twice
    (:meth:`actors.Hub.subscribe_with_snapshot`); without a cache it logs a warning and goes live.

    >>> class Model(Actor):
    ...     @handler(("tick", "*"), snapshot=True)
    ...     async def on_tick(self, key, payload): ...
    """
    if not patterns:
        raise TypeError("@handler needs at least one pattern, e.g. @handler(('tick', '*'))")

    def mark(fn: F) -> F:
        setattr(fn, PATTERNS_ATTR, tuple(Key.create_from(p) for p in patterns))
        setattr(fn, SNAPSHOT_ATTR, snapshot)
        return fn

    return mark


def every(seconds: float) -> Callable[[F], F]:
    """Declare a method ``(self)`` (sync or async) to run every ``seconds`` while the actor runs."""
    if seconds <= 0:
        raise ValueError(f"@every needs a positive interval, got {seconds}")

    def mark(fn: F) -> F:
        setattr(fn, EVERY_ATTR, float(seconds))
        return fn

    return mark
