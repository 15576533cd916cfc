"""The :class:`Actor` base class: handlers for patterns, timers, lifecycle and failure policy.

An actor owns one bounded mailbox. Every message matching one of its handlers' patterns is queued
there (overflow drops the oldest, counted) and handled in arrival order, one at a time, so an
actor's state needs no locks. Timers (``@every``) run beside the handlers on the same loop.

Failure policy: an exception in a handler or timer is logged (rate-limited, with its traceback) and
counted, and that message is skipped. After ``max_consecutive_failures`` failures in a row the actor
stops itself; ``stopped`` then resolves with the reason, and the runner decides what the process
does (by default it exits non-zero so its supervisor restarts it).
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from loguru import logger

from broker import Header, Key, PossibleKey, parse_publisher_id
from observability import Histogram, RateLimitedLog, set_task_labeller, tracing

from ._ask import ANSWERS_ATTR, DEFAULT_TIMEOUT, answering, ask
from ._hub import Hub, Message, Route
from ._mailbox import Mailbox, Overflow
from ._request import request_pattern

F = TypeVar("F", bound=Callable[..., Any])
_PATTERNS_ATTR = "__tickbus_patterns__"
_SNAPSHOT_ATTR = "__tickbus_snapshot__"
_EVERY_ATTR = "__tickbus_every__"
_HOST = socket.gethostname()
_perf_ns = time.perf_counter_ns
_mono_ns = time.monotonic_ns
_wall_ns = time.time_ns
_YIELD_EVERY = 64  # sync handlers in a row before giving other callbacks a turn
_CONSUMERS: dict[asyncio.Task[None], Actor] = {}  # consumer task -> actor, for loop-health reports


def handler_running_in(task: asyncio.Task[Any]) -> str | None:
    """``actor.handler (file:line)`` of the handler last started by an actor's consumer task, if any.

    Loop-health probes use this to name the handler behind a slow callback.
    """
    actor = _CONSUMERS.get(task)
    fn = actor.last_handler if actor is not None else None
    if actor is None or fn is None:
        return None
    code = getattr(getattr(fn, "__wrapped__", fn), "__code__", None)  # an @answers wrapper: its method
    where = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return f"{actor.name}.{getattr(fn, '__name__', fn)}{where}"


set_task_labeller(handler_running_in)


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
        setattr(fn, _PATTERNS_ATTR, tuple(Key.create_from(p) for p in patterns))
        setattr(fn, _SNAPSHOT_ATTR, snapshot)
        return fn

    return mark


def every(seconds: float) -> Callable[[F], F]:
    """Declare a method ``(self)`` (sync or async) to run every ``seconds`` while the actor runs."""
    if seconds <= 0:
        raise ValueError(f"@every needs a positive interval, got {seconds}")

    def mark(fn: F) -> F:
        setattr(fn, _EVERY_ATTR, float(seconds))
        return fn

    return mark


@dataclass(frozen=True)
class ActorStatistics:
    """Counters of one actor."""

    name: str
    handled: int
    failures: int
    consecutive_failures: int
    queued: int
    dropped: int
    published: int
    timer_runs: int
    timer_overruns: int
    running: bool


class Actor:
    """Base class of tickbus actors. Subclass it, declare ``@handler``/``@every`` methods, run it
    with ``tickbus run module:Class`` (or :func:`actors.run_group`).

    Class attributes configure defaults; ``config`` (a mapping from the TOML file or flags) is
    available as ``self.config``.
    """

    name: ClassVar[str] = ""
    prefix: ClassVar[tuple[str, ...]] = ()
    queue_size: ClassVar[int] = 10_000
    overflow: ClassVar[Overflow] = "drop_oldest"
    max_consecutive_failures: ClassVar[int] = 10

    def __init__(self, hub: Hub, *, name: str | None = None, config: Mapping[str, Any] | None = None) -> None:
        self.hub = hub
        self.name = name or type(self).name or type(self).__name__.lower()  # type: ignore[misc]
        self.config: Mapping[str, Any] = dict(config or {})
        self.log = logger.bind(actor=self.name)
        self.current_message: Message | None = None
        self.last_handler: Callable[..., Any] | None = None
        self.stopped: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._mailbox: Mailbox[tuple[Callable[[Key, Any], Any], bool, Message]] = Mailbox(
            self.queue_size, self.overflow
        )
        self._routes: list[tuple[Key, Route]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._consumer: asyncio.Task[None] | None = None
        self._errors = RateLimitedLog(actor=self.name)
        self._handled = self._failures = self._consecutive = self._published = 0
        self._stopping: asyncio.Task[None] | None = None
        self._timer_runs = self._timer_overruns = 0
        self._running = False
        self._draining = False
        # Hot-path instrumentation: plain ints and local histograms, read by the metrics exporter.
        self.handler_ns = Histogram()  # handler run time, ns
        self.latency_ns = Histogram()  # publisher send -> handler start, ns (wall clock across hosts)
        self.messages_in: dict[str, int] = {}  # by the key's first segment
        self.messages_out: dict[str, int] = {}
        self._hosts: dict[str, bool] = {}

    # -- hooks for subclasses -------------------------------------------------------------------
    async def on_start(self) -> None:
        """Called once before the first message is handled; set up state here."""

    async def on_stop(self) -> None:
        """Called once after the last message was handled (or the drain timed out)."""

    async def run(self) -> None:
        """Optional long-running body (a feed reading a socket, say), started after subscribing.

        It is cancelled first on stop. Returning ends it quietly; an exception counts as a failure
        and stops the actor (its loop has nothing left to skip to).
        """

    # -- helpers --------------------------------------------------------------------------------
    def publish(self, key: PossibleKey, payload: Any) -> None:
        """Publish ``payload`` at ``self.prefix + key`` (traced if sampled: see ``observability.tracing``)."""
        self._published += 1
        full = Key(*self.prefix, *Key.create_from(key))
        prefix = full[0] if full else ""
        self.messages_out[prefix] = self.messages_out.get(prefix, 0) + 1
        if tracing.enabled:  # in a handler the message being handled decides, elsewhere the sampler
            tracing.publish(self, full, payload, self.current_message)
        else:
            self.hub.publish(full, payload)

    async def ask(self, key: PossibleKey, payload: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Ask whoever answers ``key`` (an ``@answers`` handler) and return the answer; ``key`` is not
        prefixed. Raises ``NoAnswererError``, ``AskTimeoutError`` or ``AnswerError`` (see ``actors._ask``).
        Awaiting it inside a handler holds this actor's mailbox until the answer comes."""
        return await ask(self.hub, key, payload, timeout=timeout)

    @property
    def header(self) -> Header | None:
        """Envelope header of the message being handled (``None`` in a timer; in-process, unless traced)."""
        message = self.current_message
        return message.header if message is not None else None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Run ``on_start``, subscribe every handler's patterns and start consuming and timers."""
        await self.on_start()
        loop = asyncio.get_running_loop()
        for attr, fn in self._methods(_PATTERNS_ATTR):
            is_async = inspect.iscoroutinefunction(fn)
            for pattern in getattr(fn, _PATTERNS_ATTR):
                route = self._route(fn, is_async)
                if getattr(fn, _SNAPSHOT_ATTR, False):
                    route = await self._subscribe_with_snapshot(pattern, route)
                else:
                    self.hub.add_subscriber(pattern, route)
                self._routes.append((pattern, route))
            self.log.debug("handler {} subscribed to {}", attr, getattr(fn, _PATTERNS_ATTR))
        for attr, fn in self._methods(ANSWERS_ATTR):  # requests go through the mailbox like messages
            is_async = inspect.iscoroutinefunction(fn)
            answer = answering(self.hub, fn, is_async, f"{self.name}.{attr}")
            for pattern in map(request_pattern, getattr(fn, ANSWERS_ATTR)):
                route = self._route(answer, is_async)
                self.hub.add_subscriber(pattern, route)
                self._routes.append((pattern, route))
        for attr, fn in self._methods(_EVERY_ATTR):
            self._tasks.append(
                loop.create_task(self._timer(fn, getattr(fn, _EVERY_ATTR)), name=f"{self.name}.{attr}")
            )
        if type(self).run is not Actor.run:
            self._tasks.append(loop.create_task(self._run_body(), name=f"{self.name}.run"))
        self._consumer = loop.create_task(self._consume(), name=f"{self.name}.consume")
        _CONSUMERS[self._consumer] = self
        self._consumer.add_done_callback(_forget_consumer)
        self._running = True

    async def stop(self, drain_timeout: float = 5.0, reason: str = "stopped") -> None:
        """Unsubscribe, handle what is queued for up to ``drain_timeout`` seconds, then ``on_stop``."""
        if not self._running:
            return
        self._running = False
        self._unsubscribe()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        consumer = self._consumer
        if consumer is not None and consumer is not asyncio.current_task():
            self._draining = True
            self._mailbox.put_wakeup()
            try:
                await asyncio.wait_for(asyncio.shield(consumer), drain_timeout)
            except TimeoutError:
                left = self._mailbox.clear()
                self.log.warning(
                    "drain of actor {} timed out after {}s; {} queued messages abandoned",
                    self.name,
                    drain_timeout,
                    left,
                )
                consumer.cancel()
                await asyncio.gather(consumer, return_exceptions=True)
        try:
            await self.on_stop()
        finally:
            if not self.stopped.done():
                self.stopped.set_result(reason)

    def statistics(self) -> ActorStatistics:
        """A snapshot of this actor's counters."""
        return ActorStatistics(
            name=self.name,
            handled=self._handled,
            failures=self._failures,
            consecutive_failures=self._consecutive,
            queued=len(self._mailbox),
            dropped=self._mailbox.dropped,
            published=self._published,
            timer_runs=self._timer_runs,
            timer_overruns=self._timer_overruns,
            running=self._running,
        )

    # -- internals ------------------------------------------------------------------------------
    def _methods(self, marker: str) -> list[tuple[str, Callable[..., Any]]]:
        found = []
        for attr in dir(type(self)):
            fn = getattr(type(self), attr, None)
            if callable(fn) and hasattr(fn, marker):
                found.append((attr, getattr(self, attr)))
        return found

    def _route(self, fn: Callable[[Key, Any], Any], is_async: bool) -> Route:
        put = self._mailbox.put
        mailbox = self._mailbox
        errors = self._errors
        name = self.name

        def route(key: Key, payload: Any, header: Header | None) -> None:
            if not put((fn, is_async, Message(key, payload, header))):
                errors.warning(
                    "overflow",
                    "actor {} mailbox full ({}): dropped the oldest, {} so far",
                    name,
                    mailbox.maxsize,
                    mailbox.dropped,
                )

        return route

    async def _subscribe_with_snapshot(self, pattern: Key, route: Route) -> Route:
        # without a cache the hub logs it and goes live: an actor still starts
        return await self.hub.subscribe_with_snapshot(pattern, route, required=False)

    def _unsubscribe(self) -> None:
        for pattern, route in self._routes:
            self.hub.remove_subscriber(pattern, route)
        self._routes.clear()

    async def _consume(self) -> None:
        mailbox = self._mailbox
        skew = self.hub.clock_skew
        in_a_row = 0
        while True:
            if not mailbox:
                if self._draining:
                    return
                in_a_row = 0
                await mailbox.wait()
                continue
            fn, is_async, message = mailbox.get_nowait()
            self.current_message = message
            self.last_handler = fn
            started = _perf_ns()
            header = message.header
            if header is not None:  # end-to-end latency: publisher's send to this handler's start
                if self._same_host(header.publisher):
                    age = skew.age_ns(_mono_ns(), header.mono_ns)
                else:
                    age = skew.age_ns(_wall_ns(), header.wall_ns)
                if age is not None:  # an implausible send time is counted in the hub's `skewed`
                    self.latency_ns.record(age)
                if header.trace is not None and tracing.enabled:  # sampled upstream: run in a consumer span
                    fn = tracing.handler(self, fn, is_async, message)
            prefix = message.key[0] if message.key else ""
            counts = self.messages_in
            counts[prefix] = counts.get(prefix, 0) + 1
            try:
                if is_async:
                    await fn(message.key, message.payload)
                else:
                    fn(message.key, message.payload)
                    in_a_row += 1
                    if in_a_row >= _YIELD_EVERY:
                        in_a_row = 0
                        await asyncio.sleep(0)
            except Exception as exc:  # the policy: count, log, skip; stop after too many in a row
                self._failed(getattr(fn, "__name__", "handler"), message.key, exc)
            else:
                self._consecutive = 0
            finally:
                self.current_message = None
                self.handler_ns.record(_perf_ns() - started)
            self._handled += 1

    async def _run_body(self) -> None:
        try:
            await self.run()
        except Exception as exc:
            self.max_consecutive_failures = 1  # type: ignore[misc]  # nothing to skip to: stop now
            self._failed("run", None, exc)

    async def _timer(self, fn: Callable[[], Any], interval: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        is_async = inspect.iscoroutinefunction(fn)
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                if is_async:
                    await fn()
                else:
                    fn()
            except Exception as exc:
                self._failed(getattr(fn, "__name__", "timer"), None, exc)
            else:
                self._consecutive = 0
            self._timer_runs += 1
            due += interval
            now = loop.time()
            if due < now:  # a run overran one or more intervals: skip them rather than bunch up
                missed = int((now - due) / interval) + 1
                self._timer_overruns += missed
                due += missed * interval

    def _same_host(self, publisher: str) -> bool:
        same = self._hosts.get(publisher)
        if same is None:
            parsed = parse_publisher_id(publisher)
            same = self._hosts[publisher] = parsed is not None and parsed.host == _HOST
        return same

    def _failed(self, where: str, key: Key | None, exc: Exception) -> None:
        self._failures += 1
        self._consecutive += 1
        self._errors.log(
            "ERROR",
            "fail:" + where,
            "actor {} {} failed on {}: {!r} ({} in a row)",
            self.name,
            where,
            key,
            exc,
            self._consecutive,
            exception=exc,
        )
        if self._consecutive >= self.max_consecutive_failures and self._running:
            reason = f"{self._consecutive} consecutive failures, last in {where}: {exc!r}"
            self.log.error("actor {} stops after {}", self.name, reason)
            self._stopping = asyncio.get_running_loop().create_task(self.stop(0.0, reason=reason))


def _forget_consumer(task: asyncio.Task[None]) -> None:
    _CONSUMERS.pop(task, None)
