"""The aiopubsub-compatible API: :class:`Hub`, :class:`Publisher`, :class:`Subscriber`.

``Hub()`` routes within one process, synchronously, like aiopubsub's hub. ``await actors.connect()``
returns a hub with the same interface that routes through a tickbus broker (see ``_remote``).

Differences from aiopubsub, all deliberate:

- subscription queues are bounded (:mod:`actors._mailbox`): on overflow the **oldest** queued
  message is dropped and counted, so a slow consumer never blocks the publisher or the loop;
- an exception in a listener is logged (rate-limited) and counted, never raised into the publisher;
- the hub does not publish ``('Hub', 'addedSubscriber', ...)`` notifications;
- reserved keys (first segment starting with ``'$'``) are not matched by a leading ``'*'``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from loguru import logger

from broker import FORMAT_VERSION, WILDCARD, Header, Key, PossibleKey, SubscriptionIndex, matches
from observability import ConsumeQueueNotFoundError, InvalidKeyError, RateLimitedLog

from ._limits import ClockSkew, HubLimits
from ._mailbox import Mailbox, Overflow

Route = Callable[[Key, Any, "Header | None"], None]
ListenerSyncCallback = Callable[[Key, Any], None]
ListenerAsyncCallback = Callable[[Key, Any], Awaitable[None]]


class Message(NamedTuple):
    """One delivered message: its key, decoded payload and envelope header (``None`` in-process,
    unless the message is traced)."""

    key: Key
    payload: Any
    header: Header | None


@dataclass(frozen=True)
class BrokerCopies:
    """What one broker of a pair (or more) brought a hub: see :mod:`actors._redundancy`."""

    endpoint: str
    """The broker's frontend endpoint."""
    up: bool
    """A live session on both sockets."""
    missed: int
    """Numbers this broker skipped on streams it carried (its copies lost; a gap only when no broker
    brought them): a broker losing messages shows here while the pair still delivers everything."""
    redundant: int
    """Its copies of messages another broker delivered first."""
    repeated: int
    """Numbers it brought twice (a replay or a forgery; counted with the hub's duplicates)."""
    send_dropped: int = 0
    """This hub's messages not sent to this broker: its send queue was full (the other brokers
    carried them; ``publish_dropped`` counts those no broker took)."""
    implausible: int = 0
    """Sequence jumps that came through this broker and were taken back (forged or replayed
    numbers: the broker they came through; counted once per broker in the hub's ``implausible``)."""


@dataclass(frozen=True)
class HubStatistics:
    """Counters of one hub. Remote-only fields stay 0 for an in-process hub."""

    published: int
    delivered: int
    listener_errors: int
    patterns: int
    received: int = 0
    unmatched: int = 0
    malformed: int = 0
    oversize: int = 0
    gaps: int = 0
    duplicates: int = 0
    reordered: int = 0
    redundant: int = 0
    """Copies from a second broker of messages already delivered (several brokers; never duplicates)."""
    brokers: int = 1
    """Brokers this hub connects to."""
    brokers_up: int = 1
    """Brokers with a live session on both sockets."""
    by_broker: tuple[BrokerCopies, ...] = ()
    """Per broker, with several (none with one)."""
    publish_dropped: int = 0
    publish_skipped: int = 0
    streams: int = 0
    connected: bool = True
    disconnects: int = 0
    malformed_upstream: int = 0
    heartbeats: int = 0
    """Publisher heartbeats received (control traffic, not in ``received``' deliveries)."""
    publishers_live: int = 0
    """Publishers whose heartbeats arrive on time."""
    publishers_gone: int = 0
    """Publishers whose heartbeats stopped (reported once each, in the log)."""
    publishers_evicted: int = 0
    """Publishers forgotten to stay within the liveness table's bound (made-up ids, or more
    publishers on the bus than ``actors._liveness.DEFAULT_MAX_PUBLISHERS``)."""
    incarnations: int = 0
    """Publishers seen restarting: a new id under a known ``name@host``."""
    slow: bool = False
    """True while this hub processes messages older than its ``slow_after`` bound."""
    slow_episodes: int = 0
    """Times this hub was flagged slow."""
    lag_seconds: float = 0.0
    """Age of the oldest message processed between the last two checks (0 when idle)."""
    lag_unconfirmed: int = 0
    """Lag checks whose oldest message was older than ``slow_after`` while this hub showed no backlog
    of its own (it read its socket empty, no queue was full, its loop ran on time): a sender's clock
    behind, or made-up send times. They do not flag the hub slow (see ``actors._liveness``)."""
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    """``malformed`` by reason: frames, key, header, payload, oversize, heartbeat."""
    implausible: int = 0
    """Sequence jumps taken back: the stream went on from before them (forged or replayed ids)."""
    subscriptions_refused: int = 0
    """Subscriptions from the bus this hub's publisher socket did not store (too long, or too many)."""
    renumbered: int = 0
    """Times this hub numbered its keys afresh under a new publisher id (it published more keys
    than it keeps numbers for: 200,000); subscribers see a new incarnation, nothing lost."""
    streams_evicted: int = 0
    """Streams forgotten to stay within the tracker's bounds (``actors.SequenceTracker``)."""
    skewed: int = 0
    """Send times outside the clock-skew bounds, ignored for lag and latency (:class:`HubLimits`); an
    actor checks the messages its latency histogram samples (at most one per 50 us), not every one."""
    snapshot_rejects: int = 0
    """Snapshot reply parts and entries dropped: malformed, for no pending request, over the bounds."""
    holds: int = 0
    """Times reading stopped because an actor's mailbox was full."""
    skimmed: int = 0
    """Frames discarded unread from the receive queues by a hub held, or behind a flood, for half the
    heartbeat's timeout (counted as gaps too, once their publishers are heard again)."""
    renewed: int = 0
    """Receiving sockets replaced after their connection to a broker was lost."""


class Hub:
    """In-process message routing (aiopubsub's ``Hub``), and the base of the broker-connected hub."""

    def __init__(self, *, name: str = "hub") -> None:
        self.name = name
        self._index: SubscriptionIndex[Route] = SubscriptionIndex()
        self._log = RateLimitedLog(hub=name)
        self._published = 0
        self._delivered = 0
        self._listener_errors = 0
        self._subscribed = asyncio.Event()
        self._queues: dict[Key, dict[Route, Mailbox[Message]]] = {}  # pattern -> Subscriber queues on it
        self.limits = HubLimits()
        """What this hub holds at most on its peers' behalf; change with :meth:`set_limits`."""
        self.clock_skew = ClockSkew(self.limits.max_clock_skew, self.limits.max_message_age)
        """The filter every received send time goes through before it counts for lag or latency."""

    def set_limits(self, limits: HubLimits) -> None:
        """Apply ``limits`` (``actors.connect`` does, before the hub receives anything)."""
        self.limits = limits
        self.clock_skew.configure(limits.max_clock_skew, limits.max_message_age)

    # -- publishing ---------------------------------------------------------------------------
    def publish(self, key: tuple[str, ...], message: Any, trace: list[str] | None = None) -> int:
        """Deliver ``message`` to every subscription whose pattern matches ``key``; return its number.

        ``trace`` (a sampled message's ``[traceparent, tracestate]``, from ``observability.tracing``)
        reaches subscribers in a header, as it would through a broker; otherwise the header is ``None``.
        """
        self._published += 1
        seq = self._published  # before dispatching: a handler run inline may publish in turn
        header = None
        if trace is not None:
            now_mono, now_wall = time.monotonic_ns(), time.time_ns()
            header = Header(FORMAT_VERSION, self.name, seq, now_mono, now_wall, trace)
        self._dispatch(key if type(key) is Key else Key.create_from(key), message, header)
        return seq

    def _dispatch(self, key: Key, payload: Any, header: Header | None) -> None:
        routes = self._index.match(key)
        for route in routes:
            route(key, payload, header)
        self._delivered += len(routes)

    # -- subscriptions -------------------------------------------------------------------------
    def add_subscriber(self, key: tuple[str, ...], callback: Route) -> None:
        """Register ``callback(key, payload, header)`` for the pattern ``key``."""
        if not self._index.add(Key.create_from(key), callback):
            logger.debug("repeated subscription to {} on hub {}", key, self.name)
        self._subscribed.set()

    def remove_subscriber(self, key: tuple[str, ...], callback: Route) -> None:
        """Unregister what :meth:`add_subscriber` registered."""
        if not self._index.remove(Key.create_from(key), callback):
            logger.warning("unsubscribe from nonexistent subscription to {} on hub {}", key, self.name)

    def has_subscribers(self, key: tuple[str, ...] = Key("*")) -> bool:
        """True when some subscription matches ``key`` (``Key('*')``: any subscription at all)."""
        if tuple(key) == ("*",):
            return len(self._index) > 0
        return bool(self._index.match(Key.create_from(key)))

    async def wait_for_subscribers(self, key: tuple[str, ...], timeout: float = 5.0) -> None:
        """Wait until some subscription matches ``key``; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not self.has_subscribers(key):
                self._subscribed.clear()
                await self._subscribed.wait()

    async def subscribe_with_snapshot(
        self, key: tuple[str, ...], callback: Route, timeout: float = 5.0, *, required: bool = True
    ) -> Route:
        """Subscribe ``callback`` to ``key``, first delivering the latest message of every matching key.

        In-process there is no history: this is :meth:`add_subscriber`. A broker-connected hub asks the
        broker's last-value cache (``actors._snapshot``); when that fails it raises
        :class:`SnapshotError` with nothing subscribed, or with ``required=False`` logs a warning and
        stays subscribed, live only. Returns the route to pass to :meth:`remove_subscriber`.
        """
        self.add_subscriber(key, callback)
        return callback

    async def sync(self, timeout: float = 5.0) -> None:
        """Wait until this hub's subscriptions are active (immediate in-process)."""

    def get_subscriber_queue_sizes(self, key: PossibleKey) -> tuple[int, ...]:
        """Messages waiting in each :class:`Subscriber` queue that receives ``key`` (aiopubsub's).

        ``key`` is a concrete key (no ``'*'``); a queue subscribed by two matching patterns appears
        twice. Only this process's queues: a broker-connected hub does not see other processes'.
        """
        concrete = Key.create_from(key)
        if WILDCARD in concrete:
            raise InvalidKeyError(f"queue sizes need a concrete key, not the pattern {concrete!r}")
        return tuple(
            len(box)
            for pattern, boxes in self._queues.items()
            if matches(concrete, pattern)
            for box in boxes.values()
        )

    def get_all_subscriber_queue_sizes(self) -> dict[Key, tuple[int, ...]]:
        """Every pattern with :class:`Subscriber` queues on it -> their sizes (aiopubsub's)."""
        return {pattern: tuple(len(box) for box in boxes.values()) for pattern, boxes in self._queues.items()}

    def hold(self, consumer: object) -> None:
        """``consumer``'s queue is full: stop reading from the bus until :meth:`release` (in-process
        there is nothing to stop: the queue drops its oldest)."""

    def release(self, consumer: object) -> None:
        """``consumer`` has room again: read on once no consumer holds the hub."""

    def listener_failed(self, where: str, key: Key, exc: BaseException) -> None:
        """Count and log (rate-limited) an exception raised by a listener."""
        self._listener_errors += 1
        self._log.warning("listener:" + where, "listener {} failed on {}: {!r}", where, key, exc)

    def statistics(self) -> HubStatistics:
        """A snapshot of the hub's counters."""
        return HubStatistics(
            published=self._published,
            delivered=self._delivered,
            listener_errors=self._listener_errors,
            patterns=len(self._index.patterns()),
            skewed=self.clock_skew.skewed,
        )

    async def close(self) -> None:
        """Release resources (nothing to release in-process)."""


class Publisher:
    """Publishes under a fixed key prefix (aiopubsub's ``Publisher``)."""

    def __init__(self, hub: Hub, prefix: PossibleKey) -> None:
        self._hub = hub
        self.prefix = Key.create_from(prefix)
        self._full: dict[object, Key] = {}  # key as given -> prefix + key, so publish builds no tuples

    def publish(self, key: PossibleKey, message: Any) -> None:
        """Publish ``message`` at ``prefix + key``."""
        try:
            full = self._full.get(key)
        except TypeError:  # an unhashable key (a list): build it every time
            full = self.prefix + Key.create_from(key)
        if full is None:
            full = self.prefix + Key.create_from(key)
            if len(self._full) < 100_000:
                self._full[key] = full
        self._hub.publish(full, message)

    def has_subscribers(self, key: PossibleKey = Key("*")) -> bool:
        """True when some subscriber would receive ``prefix + key``."""
        if Key.create_from(key) == ("*",):
            return self._hub.has_subscribers((*self.prefix, "*")) or self._hub.has_subscribers(self.prefix)
        return self._hub.has_subscribers(self.prefix + Key.create_from(key))


class _Subscription(NamedTuple):
    route: Route
    mailbox: Mailbox[Message] | None


class Subscriber:
    """Named consumer with one bounded queue per subscription id (aiopubsub's ``Subscriber``)."""

    DEFAULT_SUBSCRIPTION_ID = "default"

    def __init__(
        self, hub: Hub, id_: str, *, queue_size: int = 10_000, overflow: Overflow = "drop_oldest"
    ) -> None:
        self.id = id_
        self._hub = hub
        self._queue_size = queue_size
        self._overflow: Overflow = overflow
        self._subscriptions: dict[str, _Subscription] = {}
        self._patterns: dict[str, set[Key]] = {}
        self._listeners: dict[str, tuple[asyncio.Task[None] | None, set[Key]]] = {}
        self._log = RateLimitedLog(subscriber=id_)

    # -- queues ---------------------------------------------------------------------------------
    def subscribe(self, key: PossibleKey, subscription_id: str = DEFAULT_SUBSCRIPTION_ID) -> None:
        """Subscribe the queue ``subscription_id`` (created on first use) to the pattern ``key``."""
        sub = self._subscriptions.get(subscription_id)
        if sub is None:
            mailbox: Mailbox[Message] = Mailbox(self._queue_size, self._overflow)
            sub = _Subscription(self._mailbox_route(mailbox, subscription_id), mailbox)
            self._subscriptions[subscription_id] = sub
        self._add(Key.create_from(key), subscription_id, sub.route)

    async_subscribe = subscribe

    def sync_subscribe(
        self, key: PossibleKey, callback: ListenerSyncCallback, subscription_id: str = DEFAULT_SUBSCRIPTION_ID
    ) -> None:
        """Subscribe ``callback(key, payload)``, called directly from the hub's dispatch."""
        sub = self._subscriptions.get(subscription_id)
        if sub is None:
            sub = _Subscription(self._sync_route(callback), None)
            self._subscriptions[subscription_id] = sub
        self._add(Key.create_from(key), subscription_id, sub.route)

    def unsubscribe(self, key: PossibleKey, subscription_id: str = DEFAULT_SUBSCRIPTION_ID) -> None:
        """Remove the pattern ``key`` from ``subscription_id``."""
        sub = self._subscriptions.get(subscription_id)
        if sub is None:
            raise ConsumeQueueNotFoundError(f"subscriber {self.id!r} has no subscription {subscription_id!r}")
        pattern = Key.create_from(key)
        self._patterns.get(subscription_id, set()).discard(pattern)
        self._hub.remove_subscriber(pattern, sub.route)
        boxes = self._hub._queues.get(pattern)
        if boxes is not None and boxes.pop(sub.route, None) is not None and not boxes:
            del self._hub._queues[pattern]

    async def consume(self, subscription_id: str = DEFAULT_SUBSCRIPTION_ID) -> tuple[Key, Any]:
        """Wait for the next ``(key, payload)`` of ``subscription_id``."""
        message = await self.consume_message(subscription_id)
        return message.key, message.payload

    async def consume_message(self, subscription_id: str = DEFAULT_SUBSCRIPTION_ID) -> Message:
        """Like :meth:`consume`, with the envelope header (sequence, send times, trace context)."""
        return await self._mailbox(subscription_id).get()

    def queue_size(self, subscription_id: str = DEFAULT_SUBSCRIPTION_ID) -> int:
        """Messages waiting in ``subscription_id``'s queue."""
        return len(self._mailbox(subscription_id))

    # -- listeners ------------------------------------------------------------------------------
    def add_sync_listener(self, keys: PossibleKey | set[Key], callback: ListenerSyncCallback) -> None:
        """Call ``callback(key, payload)`` directly for every message matching one of ``keys``."""
        patterns, sub_id = self._listener_subscription(keys, callback)
        for pattern in patterns:
            self.sync_subscribe(pattern, callback, sub_id)
        self._listeners[sub_id] = (None, patterns)

    add_listener = add_sync_listener

    def add_async_listener(self, keys: PossibleKey | set[Key], callback: ListenerAsyncCallback) -> None:
        """Await ``callback(key, payload)`` for each message of ``keys``, in order, from one queue."""
        patterns, sub_id = self._listener_subscription(keys, callback)
        for pattern in patterns:
            self.subscribe(pattern, sub_id)
        task = asyncio.get_running_loop().create_task(
            self._run_listener(sub_id, callback), name=f"tickbus-listener-{self.id}-{sub_id}"
        )
        self._listeners[sub_id] = (task, patterns)

    async def remove_listener(self, keys: PossibleKey | set[Key], callback: ListenerSyncCallback) -> None:
        """Remove a listener added with exactly these ``keys`` and ``callback``."""
        _, sub_id = self._listener_subscription(keys, callback)
        await self._stop_listener(sub_id)

    async def remove_all_listeners(self) -> None:
        """Remove every listener of this subscriber."""
        for sub_id in list(self._listeners):
            await self._stop_listener(sub_id)

    def statistics(self) -> SubscriberStatistics:
        """Queue depths, drops and deliveries over all of this subscriber's queues."""
        boxes = [s.mailbox for s in self._subscriptions.values() if s.mailbox is not None]
        return SubscriberStatistics(
            name=self.id,
            queued=sum(len(b) for b in boxes),
            dropped=sum(b.dropped for b in boxes),
            delivered=sum(b.delivered for b in boxes),
        )

    # -- internals ------------------------------------------------------------------------------
    def _add(self, pattern: Key, subscription_id: str, route: Route) -> None:
        self._patterns.setdefault(subscription_id, set()).add(pattern)
        self._hub.add_subscriber(pattern, route)
        mailbox = self._subscriptions[subscription_id].mailbox
        if mailbox is not None:  # for get_subscriber_queue_sizes
            self._hub._queues.setdefault(pattern, {})[route] = mailbox

    def _mailbox(self, subscription_id: str) -> Mailbox[Message]:
        sub = self._subscriptions.get(subscription_id)
        if sub is None or sub.mailbox is None:
            raise ConsumeQueueNotFoundError(
                f"subscriber {self.id!r} has no queue {subscription_id!r}; call subscribe() first "
                "(sync subscriptions have no queue)"
            )
        return sub.mailbox

    def _mailbox_route(self, mailbox: Mailbox[Message], subscription_id: str) -> Route:
        put = mailbox.put
        log = self._log
        name = self.id

        def route(key: Key, payload: Any, header: Header | None) -> None:
            if not put(Message(key, payload, header)):
                log.warning(
                    "overflow:" + subscription_id,
                    "subscriber {} queue {} is full ({}): dropped the oldest message, {} dropped so far",
                    name,
                    subscription_id,
                    mailbox.maxsize,
                    mailbox.dropped,
                )

        return route

    def _sync_route(self, callback: ListenerSyncCallback) -> Route:
        hub = self._hub
        where = f"{self.id}:{getattr(callback, '__qualname__', callback)!s}"

        def route(key: Key, payload: Any, header: Header | None) -> None:
            try:
                callback(key, payload)
            except Exception as exc:  # a listener's bug must not break dispatch for everyone else
                hub.listener_failed(where, key, exc)

        return route

    async def _run_listener(self, sub_id: str, callback: ListenerAsyncCallback) -> None:
        mailbox = self._mailbox(sub_id)
        where = f"{self.id}:{getattr(callback, '__qualname__', callback)!s}"
        while True:
            message = await mailbox.get()
            try:
                await callback(message.key, message.payload)
            except Exception as exc:  # keep consuming; the failure is counted and logged
                self._hub.listener_failed(where, message.key, exc)

    async def _stop_listener(self, sub_id: str) -> None:
        entry = self._listeners.pop(sub_id, None)
        if entry is None:
            return
        task, patterns = entry
        for pattern in patterns:
            self.unsubscribe(pattern, sub_id)
        self._subscriptions.pop(sub_id, None)
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if asyncio.current_task() is not None and asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise

    @staticmethod
    def _listener_subscription(keys: PossibleKey | set[Key], callback: object) -> tuple[set[Key], str]:
        if isinstance(keys, (set, frozenset)):
            patterns = {Key.create_from(k) for k in keys}
        else:
            patterns = {Key.create_from(keys)}
        return patterns, f"callback-{sorted(patterns)!s}-{callback!r}"


@dataclass(frozen=True)
class SubscriberStatistics:
    """Counters of one :class:`Subscriber` over all its queues."""

    name: str
    queued: int
    dropped: int
    delivered: int
