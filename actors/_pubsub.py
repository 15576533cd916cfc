"""The aiopubsub-compatible clients of a hub: :class:`Publisher` and :class:`Subscriber`.

A :class:`Publisher` publishes under a fixed key prefix; a :class:`Subscriber` owns one bounded queue
per subscription id (:mod:`actors._mailbox`, oldest dropped and counted on overflow), or calls
listeners directly from the hub's dispatch. Both work on any hub: the in-process :class:`Hub` (see
:mod:`actors._hub`, with aiopubsub's differences) or one ``await actors.connect()`` returns.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, NamedTuple

from broker import Header, Key, PossibleKey
from observability import ConsumeQueueNotFoundError, RateLimitedLog

from ._hub import Hub, ListenerAsyncCallback, ListenerSyncCallback, Message, Route
from ._mailbox import Mailbox, Overflow


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
