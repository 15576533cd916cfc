"""Which actor's handler is running, for the loop-health probes' slow-callback reports.

:class:`~actors.Actor` registers its consumer task in :data:`CONSUMERS` and writes the slowest
handler it ran inline into :data:`SLOWEST_INLINE`; the probes ask :func:`handler_running_in` and
:func:`slowest_inline_handler` (registered with :mod:`observability` on import).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from observability import set_callback_labeller, set_task_labeller


class _Running(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def last_handler(self) -> Callable[..., Any] | None: ...


CONSUMERS: dict[asyncio.Task[None], _Running] = {}  # consumer task -> actor, for loop-health reports


def handler_running_in(task: asyncio.Task[Any]) -> str | None:
    """``actor.handler (file:line)`` of the handler last started by an actor's consumer task, if any.

    Loop-health probes use this to name the handler behind a slow callback.
    """
    actor = CONSUMERS.get(task)
    fn = actor.last_handler if actor is not None else None
    if actor is None or fn is None:
        return None
    return _label(actor.name, fn)


def _label(actor: str, fn: Callable[..., Any]) -> str:
    code = getattr(getattr(fn, "__wrapped__", fn), "__code__", None)  # an @answers wrapper: its method
    where = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return f"{actor}.{getattr(fn, '__name__', fn)}{where}"


SLOWEST_INLINE: list[Any] = [0, None, None]  # ns, actor name, handler: the slowest since last asked


def slowest_inline_handler() -> str | None:
    """The slowest handler run inline (in a hub's reader callback) since the last call, and forget it.

    Loop-health probes use this to name the handler behind a slow reader callback.
    """
    took, actor, fn = SLOWEST_INLINE
    SLOWEST_INLINE[:] = [0, None, None]
    return _label(actor, fn) if took and fn is not None else None


set_task_labeller(handler_running_in)
set_callback_labeller(slowest_inline_handler)
