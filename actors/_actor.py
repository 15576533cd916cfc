"""The :class:`Actor` base class: handlers for patterns, timers, lifecycle and failure policy.

An actor handles the messages matching its handlers' patterns in arrival order, one at a time, so
its state needs no locks. A message for a sync handler that arrives while the actor is idle (nothing
queued, no handler or sync timer running) is handled at once, inline in the hub's dispatch: no
mailbox round trip, and a process that cannot keep up leaves the surplus in ZeroMQ's queues (gaps,
counted) instead of decoding it to drop it. Everything else waits in the actor's bounded mailbox
(overflow drops the oldest, counted); while it is full the hub stops reading until it is half empty.
The consumer handles queued messages in slices of at most :data:`_SLICE_NS`, so other actors and
timers get the loop in between. Timers (``@every``) run beside the handlers on the same loop.

Per-message instrumentation is plain ints, and the two histograms (handler time, end-to-end
latency) record at most one message per :data:`_SAMPLE_NS` per actor: every message at low rates,
a time-spread sample under load, so measuring costs nothing the budget notices.

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
from typing import Any, ClassVar

from loguru import logger

from broker import Header, Key, PossibleKey, parse_publisher_id
from observability import Histogram, RateLimitedLog, tracing

from ._ask import ANSWERS_ATTR, DEFAULT_TIMEOUT, answering, ask
from ._hub import Hub, Message, Route
from ._labels import CONSUMERS, SLOWEST_INLINE
from ._mailbox import Mailbox, Overflow
from ._markers import EVERY_ATTR, PATTERNS_ATTR, SNAPSHOT_ATTR
from ._request import request_pattern

_HOST = socket.gethostname()
_perf_ns = time.perf_counter_ns
_mono_ns = time.monotonic_ns
_wall_ns = time.time_ns
_SLICE_NS = 1_000_000  # queued sync handlers run for at most this long before the loop gets a turn
_SAMPLE_NS = 50_000  # the histograms record at most one message per this many ns (see the module doc)
_NOTHING: Any = object()  # no message is being handled
_HOSTS_LIMIT = 10_000  # publisher ids whose host is remembered (a peer can make up any number: cleared)


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
        self._key: Any = _NOTHING  # the message being handled: key, payload, header
        self._payload: Any = None
        self._header: Header | None = None
        self.last_handler: Callable[..., Any] | None = None
        self.stopped: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._mailbox: Mailbox[tuple[Callable[[Key, Any], Any], bool, Message, str]] = Mailbox(
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
        self._idle = False  # running, and neither a handler nor a sync timer is running: inline is safe
        self._sampled_at = 0  # perf_counter_ns of the last message the histograms recorded
        self._slice_start = 0  # perf_counter_ns when the consumer last gave the loop a turn
        self._full: dict[object, Key] = {}  # publish: key as given -> prefix + key
        # Hot-path instrumentation: plain ints and local histograms, read by the metrics exporter.
        self.handler_ns = Histogram()  # handler run time, ns
        self.latency_ns = Histogram()  # publisher send -> handler start, ns (wall clock across hosts)
        # by the first segment of the handler's pattern (the actor's choice, '*' for a leading
        # wildcard), never the key's: a peer must not choose metric attributes
        self.messages_in: dict[str, int] = {}
        self.messages_out: dict[str, int] = {}
        self._hosts: dict[str, bool] = {}
        self._origin_at = 0  # the number of publishes at which the next sampled origin is
        tracing.follow(self)  # sets it, and again when tracing is enabled or disabled

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
        try:
            full = self._full.get(key)
        except TypeError:  # an unhashable key (a list): build it every time
            full = Key(*self.prefix, *Key.create_from(key))
        if full is None:
            full = Key(*self.prefix, *Key.create_from(key))
            if len(self._full) < 10_000:
                self._full[key] = full
        prefix = full[0] if full else ""
        self.messages_out[prefix] = self.messages_out.get(prefix, 0) + 1
        if self._key is _NOTHING:  # an origin: sampled here, before any span exists
            if self._published < self._origin_at:  # not yet the next sampled one (tracing off: never)
                self.hub.publish(full, payload)
            else:
                self.resample_origins()
                tracing.origin(self, full, payload)
        elif (header := self._header) is None or (trace := header.trace) is None or not tracing.enabled:
            self.hub.publish(full, payload)  # handling an untraced message, or tracing is off
        else:  # handling a traced message: tracing decides whether this publish joins its trace
            tracing.publish(self, full, payload, trace)

    def resample_origins(self) -> None:
        """Draw this actor's next sampled origin publish afresh (tracing calls it: see
        ``observability.Tracing.origin_gap``)."""
        self._origin_at = self._published + tracing.origin_gap()

    async def ask(self, key: PossibleKey, payload: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Ask whoever answers ``key`` (an ``@answers`` handler) and return the answer; ``key`` is not
        prefixed. Raises ``NoAnswererError``, ``AskTimeoutError`` or ``AnswerError`` (see ``actors._ask``).
        Awaiting it inside a handler holds this actor's mailbox until the answer comes."""
        return await ask(self.hub, key, payload, timeout=timeout)

    @property
    def current_message(self) -> Message | None:
        """The message being handled (``None`` in a timer or between messages)."""
        if self._key is _NOTHING:
            return None
        return Message(self._key, self._payload, self._header)

    @property
    def header(self) -> Header | None:
        """Envelope header of the message being handled (``None`` in a timer; in-process, unless traced)."""
        return self._header if self._key is not _NOTHING else None

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Run ``on_start``, subscribe every handler's patterns and start consuming and timers."""
        await self.on_start()
        loop = asyncio.get_running_loop()
        for attr, fn in self._methods(PATTERNS_ATTR):
            is_async = inspect.iscoroutinefunction(fn)
            for pattern in getattr(fn, PATTERNS_ATTR):
                route = self._route(fn, is_async, pattern[0] if pattern else "")
                if getattr(fn, SNAPSHOT_ATTR, False):
                    route = await self._subscribe_with_snapshot(pattern, route)
                else:
                    self.hub.add_subscriber(pattern, route)
                self._routes.append((pattern, route))
            self.log.debug("handler {} subscribed to {}", attr, getattr(fn, PATTERNS_ATTR))
        for attr, fn in self._methods(ANSWERS_ATTR):  # requests go through the mailbox like messages
            is_async = inspect.iscoroutinefunction(fn)
            answer = answering(self.hub, fn, is_async, f"{self.name}.{attr}")
            for pattern in map(request_pattern, getattr(fn, ANSWERS_ATTR)):
                route = self._route(answer, is_async, pattern[0])
                self.hub.add_subscriber(pattern, route)
                self._routes.append((pattern, route))
        for attr, fn in self._methods(EVERY_ATTR):
            self._tasks.append(
                loop.create_task(self._timer(fn, getattr(fn, EVERY_ATTR)), name=f"{self.name}.{attr}")
            )
        if type(self).run is not Actor.run:
            self._tasks.append(loop.create_task(self._run_body(), name=f"{self.name}.run"))
        self._consumer = loop.create_task(self._consume(), name=f"{self.name}.consume")
        CONSUMERS[self._consumer] = self
        self._consumer.add_done_callback(_forget_consumer)
        self._running = True
        self._idle = not self._mailbox  # what arrived while starting is handled first, in order

    async def stop(self, drain_timeout: float = 5.0, reason: str = "stopped") -> None:
        """Unsubscribe, handle what is queued for up to ``drain_timeout`` seconds, then ``on_stop``."""
        if not self._running:
            return
        self._running = self._idle = False
        self._unsubscribe()
        self.hub.release(self)
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
                log = self.log.warning if left else self.log.debug  # nothing abandoned: nothing to look at
                log(
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

    def _route(self, fn: Callable[[Key, Any], Any], is_async: bool, label: str) -> Route:
        """The route of ``fn`` for one pattern; ``label``: what ``messages_in`` counts it under."""
        mailbox = self._mailbox
        put = mailbox.put
        maxsize = mailbox.maxsize
        hold = self.hub.hold
        overflowed = self._overflowed

        def queue(key: Key, payload: Any, header: Header | None) -> None:
            if not put((fn, is_async, Message(key, payload, header), label)):
                overflowed()
            elif len(mailbox) >= maxsize:
                hold(self)  # the hub stops reading until the consumer has emptied half of it

        if is_async:
            return queue
        handle = self._handle_sync

        queued = mailbox.items  # the deque itself: a C-level emptiness check on the hot path

        def route(key: Key, payload: Any, header: Header | None) -> None:
            if self._idle and not queued:  # nothing before it: handle now, in order
                handle(fn, key, payload, header, label)
            else:
                queue(key, payload, header)

        return route

    def _overflowed(self) -> None:
        self._errors.warning(
            "overflow",
            "actor {} mailbox full ({}): dropped the oldest, {} so far",
            self.name,
            self._mailbox.maxsize,
            self._mailbox.dropped,
        )

    def _handle_sync(
        self, fn: Callable[[Key, Any], Any], key: Key, payload: Any, header: Header | None, label: str
    ) -> None:
        """Run one sync handler under the failure policy, with the per-message bookkeeping."""
        idle, self._idle = self._idle, False
        self._key, self._payload, self._header = key, payload, header
        self.last_handler = fn
        started = _perf_ns()
        sample = started - self._sampled_at >= _SAMPLE_NS
        call = fn  # fn names the handler in reports; call may be it in a consumer span
        if header is not None:
            if sample:
                self._record_latency(header)
            if header.trace is not None and tracing.enabled:  # sampled upstream: run in a consumer span
                call = tracing.handler(self, fn, False, key, header)
        counts = self.messages_in
        counts[label] = counts.get(label, 0) + 1
        try:
            call(key, payload)
        except Exception as exc:  # the policy: count, log, skip; stop after too many in a row
            self._failed(getattr(fn, "__name__", "handler"), key, exc)
        else:
            self._consecutive = 0
        finally:
            self._key = _NOTHING
            self._handled += 1
            took = _perf_ns() - started
            if took > SLOWEST_INLINE[0]:  # for a slow-callback report (see slowest_inline_handler)
                SLOWEST_INLINE[:] = [took, self.name, fn]
            if sample:
                self._sampled_at = started
                self.handler_ns.record(took)
            self._idle = idle and self._running

    def _record_latency(self, header: Header) -> None:
        """End-to-end latency of one message: its publisher's send to this handler's start."""
        skew = self.hub.clock_skew
        if self._same_host(header.publisher):
            age = skew.age_ns(_mono_ns(), header.mono_ns)
        else:
            age = skew.age_ns(_wall_ns(), header.wall_ns)
        if age is not None:  # an implausible send time is counted in the hub's `skewed`
            self.latency_ns.record(age)

    async def _subscribe_with_snapshot(self, pattern: Key, route: Route) -> Route:
        # without a cache the hub logs it and goes live: an actor still starts
        return await self.hub.subscribe_with_snapshot(pattern, route, required=False)

    def _unsubscribe(self) -> None:
        for pattern, route in self._routes:
            self.hub.remove_subscriber(pattern, route)
        self._routes.clear()

    async def _consume(self) -> None:
        mailbox = self._mailbox
        hub = self.hub
        while True:
            if not mailbox:
                hub.release(self)
                if self._draining:
                    return
                self._idle = self._running  # inline handling may resume: nothing is queued
                await mailbox.wait()
                continue
            self._idle = False
            fn, is_async, message, label = mailbox.get_nowait()
            if len(mailbox) * 2 <= mailbox.maxsize:
                hub.release(self)
            if not is_async:
                self._handle_sync(fn, message.key, message.payload, message.header, label)
                if _perf_ns() - self._slice_start >= _SLICE_NS:
                    await asyncio.sleep(0)  # the loop's other callbacks get their turn
                    self._slice_start = _perf_ns()
                continue
            self._key, self._payload, self._header = message
            self.last_handler = fn
            started = _perf_ns()
            sample = started - self._sampled_at >= _SAMPLE_NS
            header = message.header
            call = fn  # fn names the handler in reports; call may be it in a consumer span
            if header is not None:
                if sample:
                    self._record_latency(header)
                if header.trace is not None and tracing.enabled:  # sampled upstream: run in a consumer span
                    call = tracing.handler(self, fn, True, message.key, header)
            counts = self.messages_in
            counts[label] = counts.get(label, 0) + 1
            try:
                await call(message.key, message.payload)
            except Exception as exc:  # the policy: count, log, skip; stop after too many in a row
                self._failed(getattr(fn, "__name__", "handler"), message.key, exc)
            else:
                self._consecutive = 0
            finally:
                self._key = _NOTHING
                if sample:
                    self._sampled_at = started
                    self.handler_ns.record(_perf_ns() - started)
            self._handled += 1
            self._slice_start = _perf_ns()

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
                    idle, self._idle = self._idle, False  # a publish in it must not re-enter a handler
                    try:
                        fn()
                    finally:
                        self._idle = idle and self._running
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
            if len(self._hosts) >= _HOSTS_LIMIT:  # bounded: a peer can make up any number of ids
                self._hosts.clear()
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
    CONSUMERS.pop(task, None)
