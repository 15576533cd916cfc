"""aiopubsub's helpers, for code that used them: :class:`Loop`, :class:`ThrottledPublisher`, :class:`MockHub`.

Same constructors and behaviour as ``aiopubsub.loop.Loop``, ``aiopubsub.utils.ThrottledPublisher``
and ``aiopubsub.testing.mocks.MockHub``, with these differences:

- :class:`Loop` keeps a reference to its task, and a coroutine that raises stops the loop with the
  exception logged and kept in :attr:`Loop.exception` (aiopubsub re-raised it into a task nobody awaits);
- :class:`ThrottledPublisher` treats a finite delay sequence as the most it waits: when the sequence
  runs out, ``publish`` returns (aiopubsub raised ``RuntimeError`` from the exhausted iterator). It
  sees the queues of this process only (:meth:`Hub.get_subscriber_queue_sizes`): subscribers in
  other processes are protected by the broker's bounded queues and counted as gaps, never throttled;
- :class:`MockHub` is a :class:`Hub`, so ``Publisher``, ``Subscriber`` and ``Actor`` accept it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from loguru import logger

from broker import Key, PossibleKey

from ._hub import Hub, Route
from ._pubsub import Publisher


class Loop:
    """Run ``coro()`` again and again, sleeping ``delay`` seconds after each run (``None``: no sleep).

    ``start()`` begins (again, after a stop), ``stop()`` cancels the run in progress, ``await
    stop_wait()`` also waits until it has ended. A run that raises stops the loop: the exception is
    logged and kept in :attr:`exception`.
    """

    def __init__(self, coro: Callable[[], Awaitable[Any]], delay: float | None) -> None:
        self.coro = coro
        self.delay = delay
        self.name = getattr(coro, "__qualname__", repr(coro))
        self.exception: BaseException | None = None
        """What the last run raised, if it stopped the loop."""
        self._task: asyncio.Task[None] | None = None

    @property
    def is_running(self) -> bool:
        """True from :meth:`start` until :meth:`stop` or a failed run."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start running (needs a running event loop); nothing happens if already running."""
        if not self.is_running:
            self.exception = None
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"tickbus-loop-{self.name}")

    def stop(self) -> None:
        """Cancel the run in progress and stop looping."""
        if self._task is not None:
            self._task.cancel()

    async def stop_wait(self) -> None:
        """:meth:`stop`, then wait until the run in progress has ended."""
        task = self._task
        self.stop()
        if task is not None:
            await asyncio.wait([task])  # never raises: the caller's own cancellation still propagates

    async def _run(self) -> None:
        while True:
            try:
                await self.coro()
            except Exception as exc:  # stop the loop, keep and log the failure (CancelledError passes)
                self.exception = exc
                logger.opt(exception=exc).error("loop {} stopped: its coroutine raised {!r}", self.name, exc)
                return
            if self.delay is not None:
                await asyncio.sleep(self.delay)


class ThrottledPublisher:
    """Wraps a :class:`Publisher`; ``await publish(...)`` returns once every queue of this process
    that receives one of the keys published so far holds at most ``max_qsize`` messages.

    While some queue is longer, it sleeps the delays of a fresh ``delay_sequence_factory()`` in turn
    (e.g. ``lambda: itertools.repeat(0.01)``, or a finite backoff that bounds the wait).
    """

    def __init__(
        self,
        hub: Hub,
        publisher: Publisher,
        max_qsize: int,
        delay_sequence_factory: Callable[[], Iterable[float]],
    ) -> None:
        self._hub = hub
        self._publisher = publisher
        self._max_qsize = max_qsize
        self._delays = delay_sequence_factory
        self._published_keys: set[Key] = set()

    async def publish(self, key: PossibleKey, message: Any) -> None:
        """Publish ``message`` at the publisher's prefix + ``key``, then wait while queues are too long."""
        self._publisher.publish(key, message)
        self._published_keys.add(self._publisher.prefix + Key.create_from(key))
        delays = iter(self._delays())
        for published in self._published_keys:
            while max(self._hub.get_subscriber_queue_sizes(published), default=0) > self._max_qsize:
                delay = next(delays, None)
                if delay is None:
                    return  # the sequence bounds the wait
                await asyncio.sleep(delay)


class MockHub(Hub):
    """A hub for unit tests that records what is published and delivers nothing.

    ``published`` holds ``(key, message)`` in order, ``published_by_key`` the messages of each key,
    ``subscribers`` the routes added per pattern; :meth:`get_subscriber_queue_sizes` reports every
    message published at a key as waiting (so a :class:`ThrottledPublisher` on it throttles).
    """

    def __init__(self, *, name: str = "mock") -> None:
        super().__init__(name=name)
        self.published: list[tuple[Key, Any]] = []
        self.published_by_key: defaultdict[Key, list[Any]] = defaultdict(list)
        self.subscribers: defaultdict[Key, list[Route]] = defaultdict(list)

    def publish(self, key: tuple[str, ...], message: Any, trace: list[str] | None = None) -> int:
        """Record ``message`` at ``key``; deliver nothing."""
        full = Key.create_from(key)
        self._published += 1
        self.published.append((full, message))
        self.published_by_key[full].append(message)
        return self._published

    def add_subscriber(self, key: tuple[str, ...], callback: Route) -> None:
        """Record the route (and index it, so :meth:`has_subscribers` answers as a hub would)."""
        self.subscribers[Key.create_from(key)].append(callback)
        super().add_subscriber(key, callback)

    def remove_subscriber(self, key: tuple[str, ...], callback: Route) -> None:
        """Forget what :meth:`add_subscriber` recorded."""
        routes = self.subscribers.get(Key.create_from(key), [])
        if callback in routes:
            routes.remove(callback)
        super().remove_subscriber(key, callback)

    def get_subscriber_queue_sizes(self, key: PossibleKey) -> tuple[int, ...]:
        """``(messages published at key,)``: the mock delivers nothing, so all of them wait."""
        return (len(self.published_by_key.get(Key.create_from(key), ())),)
