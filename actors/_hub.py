"""The aiopubsub-compatible hub, :class:`Hub`; its clients are in ``_pubsub`` (``Publisher``, ``Subscriber``).

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
from observability import InvalidKeyError, RateLimitedLog

from ._limits import ClockSkew, HubLimits
from ._mailbox import Mailbox

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
