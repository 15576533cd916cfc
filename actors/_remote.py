"""The broker-connected hub: the same API as :class:`Hub`, routed through a tickbus broker.

Sockets: an XPUB connected to the broker's frontend (publishing; being an XPUB it also learns which
key prefixes anyone subscribes to, so a key nobody wants is never serialised, and with XPUB_NODROP a
full send queue is counted instead of silently dropped) and a SUB connected to the backend. The XPUB
is in manual mode: a subscription reaches its table only once this hub accepts it, so what the rest
of the bus subscribes costs at most ``max_remote_subscriptions`` prefixes of at most
``max_subscription`` bytes (longer and further ones are refused, counted and logged).
Everything is delivered through the broker, including to subscribers in this same process, so
there is one order per publisher and one code path.

Built in four floors: :mod:`actors._connections` (the sockets and their connections),
:mod:`actors._reading` (the reader: what it takes off the SUB sockets, and when),
:mod:`actors._sending` (its streams, publishing, heartbeats, what the bus subscribes) and this
module (setting it up, subscribing, housekeeping, statistics, closing).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import time
from typing import Any

import zmq

from broker import (
    DEFAULT_MAX_SUBSCRIPTION,
    HEARTBEAT,
    MAX_PUBLISHER_ID,
    REPLY,
    SLOW,
    SYNC,
    ClientCurve,
    DecodeLimits,
    Key,
    encode_key,
    new_publisher_id,
    subscription_prefix,
)
from observability import ConnectError, InvalidKeyError

from ._connections import _pending
from ._hub import BrokerCopies, HubStatistics, Message, Route
from ._inbound import DEFAULT_MAX_KEY, Inbound
from ._liveness import DEFAULT_MAX_INTERVAL, HubWatch
from ._redundancy import DEFAULT_REORDER_WINDOW, RedundantTracker
from ._sending import HubSender, publisher_bytes
from ._sequence import SequenceTracker
from ._snapshot import SnapshotClient
from ._wanted import BusSubscriptions

_HOUSEKEEPING = 0.02  # seconds between safety drains of every socket while the hub is busy (_sweep)
_HOUSEKEEPING_IDLE = 0.1  # ... once it sent and received nothing since the last (idle heartbeats allowing)
_LAG_EVERY = 0.1  # seconds between lag checks
_LIVENESS_EVERY = 0.5  # seconds between checks for publishers gone quiet
# a reply to the longest inbox must fit max_key, and so does a heartbeat (a publisher id holds its name)
_MIN_MAX_KEY = len(encode_key((REPLY, "x" * MAX_PUBLISHER_ID)))


def endpoint_list(endpoints: str | list[str] | tuple[str, ...]) -> list[str]:
    """Broker endpoints from a list or a comma-separated string (``$TICKBUS_FRONTEND``, TOML, CLI)."""
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    return [e.strip() for e in endpoints if e.strip()]


def names_a_host(endpoint: str) -> bool:
    """True when libzmq must resolve a host name to connect to ``endpoint`` (``tcp://`` with a name,
    not an address; also when the endpoint does not parse as one): it does so on every reconnect.
    A source part (``tcp://SOURCE;HOST:PORT``) is never looked up: libzmq takes only an address or
    an interface name there (``allow_dns(false)`` in its ``tcp_address_t::resolve``)."""
    scheme, _, address = endpoint.partition("://")
    if scheme != "tcp":
        return False  # ipc://, inproc://: a path or a name of the process's own
    host = address.rpartition(";")[2].rpartition(":")[0].strip("[]")  # past a "source;" part
    try:
        ipaddress.ip_address(host.partition("%")[0])  # an IPv6 literal may name its interface
    except ValueError:
        return True
    return False


def _check_options(max_key: int, idle_heartbeat: float, max_lag: float | None) -> None:
    if max_lag is not None and (
        isinstance(max_lag, bool) or not isinstance(max_lag, int | float) or not max_lag > 0
    ):
        raise ValueError(f"hub option max_lag={max_lag!r} is not a number of seconds > 0 (math.inf: never)")
    if type(max_key) is not int or max_key < _MIN_MAX_KEY:
        raise ValueError(
            f"hub option max_key={max_key!r} is not a byte count >= {_MIN_MAX_KEY} "
            f"(a reply key to the longest inbox); the default is {DEFAULT_MAX_KEY}"
        )
    if not 0 <= idle_heartbeat <= DEFAULT_MAX_INTERVAL:  # subscribers refuse longer intervals
        raise ValueError(
            f"hub option idle_heartbeat={idle_heartbeat!r} is not 0 (off) or up to "
            f"{DEFAULT_MAX_INTERVAL:g} s, the longest interval a subscriber accepts"
        )


class RemoteHub(HubSender):
    """A :class:`Hub` whose publish and subscribe go through a tickbus broker. Use :func:`connect`."""

    def __init__(
        self,
        frontend: str | list[str],
        backend: str | list[str],
        *,
        name: str,
        hwm: int,
        heartbeat_ivl: float,
        heartbeat_timeout: float,
        max_payload: int,
        linger: float,
        context: zmq.Context[zmq.Socket[bytes]] | None,
        idle_heartbeat: float = 1.0,
        slow_after: float = 1.0,
        max_lag: float | None = None,
        curve: ClientCurve | None = None,
        decode_limits: DecodeLimits | None = None,
        max_remote_subscriptions: int = 100_000,
        max_subscription: int = DEFAULT_MAX_SUBSCRIPTION,
        max_streams: int = 100_000,
        reorder_window: float = DEFAULT_REORDER_WINDOW,
        max_key: int = DEFAULT_MAX_KEY,
    ) -> None:
        _check_options(max_key, idle_heartbeat, max_lag)
        super().__init__(name=name)
        self._curve = curve  # CURVE keys for both sockets (broker._curve); None: plain ZMTP
        self.frontends, self.backends = endpoint_list(frontend), endpoint_list(backend)
        if len(self.frontends) != len(self.backends) or not self.frontends:
            raise ConnectError(
                f"one backend per frontend, in the same order: got frontends {self.frontends} "
                f"and backends {self.backends}"
            )
        self.frontend, self.backend = ",".join(self.frontends), ",".join(self.backends)
        brokers = len(self.frontends)
        self.publisher_id = new_publisher_id(name)
        self._publisher_bytes = publisher_bytes(self.publisher_id)
        self.sender_id = self.publisher_id
        """The publisher id this hub's messages carry: :attr:`publisher_id` (the hub's inbox) until
        the hub numbers its keys afresh under a new one (:attr:`renumbered`)."""
        self._own_context = context is None
        # an I/O thread per broker when a host name is to be resolved (see _open_sockets)
        self._by_name = brokers > 1 and any(map(names_a_host, (*self.frontends, *self.backends)))
        io_threads = brokers if self._by_name else 1
        self._ctx = context if context is not None else zmq.Context(io_threads=io_threads)
        self._max_payload = max_payload
        self._max_key = max_key
        self._open_sockets(brokers, hwm, heartbeat_ivl, heartbeat_timeout, linger)
        self._init_reading(heartbeat_ivl, heartbeat_timeout, max_lag)
        self._out: dict[tuple[str, ...], list[Any]] = {}  # key -> [wire key, seq, epoch, wanted, key+end]
        self._seqs: dict[bytes, int] = {}  # sequences of keys evicted from _out
        self._prefix_refs: dict[bytes, int] = {}
        self._wanted = BusSubscriptions(
            brokers, max_prefixes=max_remote_subscriptions, max_prefix=max_subscription
        )
        self._publish_dropped_by_broker = [0] * brokers
        self._broker_losses = 0  # times a broker's connection was lost while another stayed up
        limits = dataclasses.replace(decode_limits or DecodeLimits(), max_bytes=max_payload)
        self._inbound = Inbound(
            self._index,
            max_payload=max_payload,
            log=self._log,
            name=name,
            limits=limits,
            max_key=max_key,
            tracker=(
                SequenceTracker(max_streams=max_streams)
                if brokers == 1
                else RedundantTracker(brokers, reorder_window=reorder_window, max_streams=max_streams)
            ),
        )
        self._expiry: asyncio.TimerHandle | None = None  # the end of the oldest hold's window
        self._watch = HubWatch(
            name, self.publisher_id, idle_heartbeat=idle_heartbeat, slow_after=slow_after, log=self._log
        )
        self._inbound.on_heartbeat, self._inbound.rest_of_message = self._watch.heard, self._rest_of_message
        self._watch.lag.skew = self.clock_skew  # one clock-skew bound and counter per hub (actors._limits)
        self._heartbeat_key = Key(*HEARTBEAT, name)
        self._heartbeat_kb = encode_key(self._heartbeat_key)
        # a heartbeat goes at most a quarter of its interval late: idle sweeps are no further apart
        self._idle_sweep = max(
            _HOUSEKEEPING, min(_HOUSEKEEPING_IDLE, idle_heartbeat / 4 or _HOUSEKEEPING_IDLE)
        )
        self._activity = 0  # messages sent and received at the last sweep
        self._next_lag = self._next_liveness = 0.0
        self._snapshots = SnapshotClient(self, self.publisher_id, self._log)
        self._connected = [False] * len(self._monitors)
        self._connected_event = asyncio.Event()
        self._prefixes_changed = asyncio.Event()
        self._publish_dropped = self._publish_skipped = self._disconnects = self._malformed_upstream = 0
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._held: set[object] = set()  # consumers whose queues are full: no reading meanwhile
        self._cut: int | None = None  # the broker whose socket is in a refused message's frames
        self._skip_soon: asyncio.Handle | None = None  # the callback that skips more of them
        self._start_reading(brokers)
        self._sweep_due = self._loop.time() + _HOUSEKEEPING
        self._housekeeping = self._loop.call_later(_HOUSEKEEPING, self._sweep)

    def _start_reading(self, brokers: int) -> None:
        if brokers > 1:
            self._on_sub_readable = self._on_subs_readable  # type: ignore[method-assign]
            self._fanout = self._send_each
        for sub in self._subs:
            self._loop.add_reader(sub.FD, self._on_sub_readable)
        for pub in self._pubs:
            self._loop.add_reader(pub.FD, self._on_pub_readable)
        for index, monitor in enumerate(self._monitors):
            self._loop.add_reader(monitor.FD, self._on_monitor, index)
            self._loop.call_soon(self._on_monitor, index)  # events may predate the reader
        self._loop.call_soon(self._on_sub_readable)
        self._loop.call_soon(self._on_pub_readable)

    def _sweep(self) -> None:
        # ZeroMQ's descriptor is edge-triggered, and any send or setsockopt may consume its edge
        # while processing commands (a subscription arriving during a publish burst, say). A cheap
        # periodic drain of every socket bounds how long such an event can wait unseen: 20 ms while
        # the hub sends or receives, 100 ms once it did neither since the last sweep (an idle process
        # then wakes 10 times a second for it, not 50; nothing it sends can have taken an edge but
        # its own heartbeats).
        if self._closed:
            return
        inbound = self._inbound
        activity = self._published + self._publish_skipped + inbound.received
        idle, self._activity = activity == self._activity, activity
        # rescheduled first: nothing below may stop the heartbeats and the safety drains
        delay = self._idle_sweep if idle else _HOUSEKEEPING
        self._housekeeping = self._loop.call_later(delay, self._sweep)
        now = time.monotonic()  # the loop's clock (asyncio's loop.time())
        due, self._sweep_due = self._sweep_due, now + delay
        if now - due > self._watch.lag.slow_after / 2:  # the loop stalled: whatever it processes now waited
            self._watch.backlog_at = now
        try:
            # a look at each socket's events first (~1.4 us; a recv that finds nothing ~3.6 us)
            if any(map(_pending, self._pubs)):
                self._on_pub_readable()
            if any(map(_pending, self._subs)):
                # handed to the reader, not read here: a backlog found by the sweep is handled in
                # the reader's own slice after the loop's other callbacks, and its handlers' CPU is
                # not the sweep's (a profile saw _sweep's share double while a late loop had a backlog)
                self._loop.call_soon(self._on_sub_readable)
            if self._expiry is None and len(self._subs) > 1:
                self._release()
            self._look_at_connections(every=1)
            if self._watch.schedule.due(now, self._published + self._publish_skipped):
                self._send_heartbeat(now)
                if any(map(_pending, self._pubs)):  # the send may have taken a subscription's edge
                    self._on_pub_readable()
            if now >= self._next_lag:
                self._next_lag = now + _LAG_EVERY
                header, inbound.oldest_header = inbound.oldest_header, None
                event = self._watch.check_lag(header, inbound.tracker.gaps, now, held=bool(self._held))
                if event is not None:
                    self.publish(Key(*SLOW, self.name), event)
            if now >= self._next_liveness:
                self._next_liveness = now + _LIVENESS_EVERY
                self._watch.check_liveness(now, inbound.tracker)
        except Exception as exc:  # housekeeping must outlive its own bugs
            self._log.log("ERROR", "housekeeping", "hub {}: housekeeping failed", self.name, exception=exc)

    # -- subscribing --------------------------------------------------------------------------
    def add_subscriber(self, key: tuple[str, ...], callback: Route) -> None:
        """Register a pattern locally and, on first use of its wire prefix, at the broker."""
        prefix = subscription_prefix(key)
        if len(prefix) > DEFAULT_MAX_SUBSCRIPTION:
            raise InvalidKeyError(
                f"pattern {key!r:.80} is {len(prefix)} bytes on the wire; brokers refuse subscriptions "
                f"over {DEFAULT_MAX_SUBSCRIPTION} bytes (libzmq's trie cannot hold much longer ones)"
            )
        if self._closed:
            raise ConnectError(f"hub {self.name!r} is closed: nothing can be subscribed through it")
        super().add_subscriber(key, callback)
        refs = self._prefix_refs.get(prefix, 0)
        if refs == 0:
            for sub in self._subs:
                sub.setsockopt(zmq.SUBSCRIBE, prefix)
            self._loop.call_soon(self._on_sub_readable)  # setsockopt may have consumed the edge
        self._prefix_refs[prefix] = refs + 1

    def remove_subscriber(self, key: tuple[str, ...], callback: Route) -> None:
        """Unregister a pattern; the broker subscription goes when its last pattern goes."""
        super().remove_subscriber(key, callback)
        prefix = subscription_prefix(key)
        refs = self._prefix_refs.get(prefix, 0) - 1
        if refs > 0:
            self._prefix_refs[prefix] = refs
        elif refs == 0:
            del self._prefix_refs[prefix]
            # what is published while nobody here listens is not a gap: restart those streams
            self._inbound.tracker.forget_prefix(prefix, still_wanted=tuple(self._prefix_refs))
            if not self._closed:
                for sub in self._subs:
                    sub.setsockopt(zmq.UNSUBSCRIBE, prefix)

    # -- snapshots (see actors._snapshot and broker._lvc) -----------------------------------------
    async def snapshot(self, key: tuple[str, ...], timeout: float = 5.0) -> list[Message]:
        """The latest message of every key matching ``key``, from the broker's last-value cache.

        :class:`SnapshotError` when the broker has none or the reply does not arrive in ``timeout`` s.
        """
        return await self._snapshots.fetch(key, timeout)

    async def subscribe_with_snapshot(
        self, key: tuple[str, ...], callback: Route, timeout: float = 5.0, *, required: bool = True
    ) -> Route:
        """Subscribe, then deliver the cached state, then every newer live message (Clone pattern).

        See :meth:`Hub.subscribe_with_snapshot`; returns the route to pass to :meth:`remove_subscriber`.
        """
        return await self._snapshots.subscribe(key, callback, timeout, required=required)

    async def sync(self, timeout: float = 5.0) -> None:
        """Wait until this hub's subscriptions are active at the broker (a probe makes the round trip)."""
        probe = Key(*SYNC, self.publisher_id)
        arrived = asyncio.Event()

        def on_probe(key: Key, payload: Any, header: object) -> None:
            arrived.set()

        self.add_subscriber(probe, on_probe)
        try:
            async with asyncio.timeout(timeout):
                while not arrived.is_set():
                    self.publish(probe, None)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(arrived.wait(), 0.02)
        except TimeoutError:
            raise ConnectError(
                f"hub {self.name!r}: no round trip through the broker ({self.frontend} -> {self.backend}) "
                f"within {timeout}s; is `tickbus broker` running there?"
            ) from None
        finally:
            self.remove_subscriber(probe, on_probe)

    def statistics(self) -> HubStatistics:
        """A snapshot of this hub's counters, including sequence anomalies and malformed drops."""
        inbound = self._inbound.statistics()
        return HubStatistics(
            published=self._published,
            delivered=inbound.delivered,
            listener_errors=self._listener_errors + self._inbound.route_errors,
            patterns=len(self._index.patterns()),
            received=inbound.received,
            unmatched=inbound.unmatched,
            malformed=inbound.malformed,
            oversize=inbound.oversize,
            gaps=inbound.gaps,
            duplicates=inbound.duplicates,
            reordered=inbound.reordered,
            redundant=getattr(self._inbound.tracker, "redundant", 0),
            brokers=len(self._subs),
            brokers_up=self._brokers_up(),
            by_broker=self._by_broker(),
            publish_dropped=self._publish_dropped,
            publish_skipped=self._publish_skipped,
            streams=inbound.streams,
            connected=self.connected,
            disconnects=self._disconnects,
            malformed_upstream=self._malformed_upstream,
            heartbeats=self._inbound.heartbeats,
            publishers_live=self._watch.liveness.live,
            publishers_gone=self._watch.liveness.gone,
            publishers_evicted=self._watch.liveness.evicted,
            incarnations=self._inbound.tracker.incarnations,
            slow=self._watch.lag.slow,
            slow_episodes=self._watch.lag.episodes,
            lag_seconds=self._watch.lag.lag,
            lag_unconfirmed=self._watch.lag.unconfirmed,
            malformed_by_reason=dict(self._inbound.malformed_by_reason),
            implausible=self._inbound.tracker.implausible,
            subscriptions_refused=self._wanted.refused,
            streams_evicted=self._inbound.tracker.evicted,
            renumbered=self.renumbered,
            skewed=self.clock_skew.skewed,
            snapshot_rejects=self._snapshots.rejects,
            holds=self.holds,
            skimmed=self.skimmed,
            renewed=self.renewed,
        )

    def _by_broker(self) -> tuple[BrokerCopies, ...]:
        tracker = self._inbound.tracker
        if not isinstance(tracker, RedundantTracker):
            return ()
        return tuple(
            BrokerCopies(
                endpoint=self.frontends[i],
                up=self._broker_up(i),
                missed=tracker.missed_by_source[i],
                redundant=tracker.redundant_by_source[i],
                repeated=tracker.repeated_by_source[i],
                send_dropped=self._publish_dropped_by_broker[i],
                implausible=tracker.implausible_by_source[i],
            )
            for i in range(len(self._subs))
        )

    def sequence_tracker(self) -> SequenceTracker:
        """The per-publisher gap/duplicate bookkeeping (read-only use)."""
        return self._inbound.tracker

    async def close(self) -> None:
        """Stop receiving, flush pending sends for up to ``linger`` seconds, close the sockets."""
        if self._closed:
            return
        self._send_farewell()
        self._closed = True
        self._housekeeping.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
        for pending in (*self._renewing.values(), self._skimming):
            if pending is not None:
                pending.cancel()
        for sock in (*self._subs, *self._pubs, *self._monitors):
            self._loop.remove_reader(sock.FD)
        # Closed here, on the loop's thread, which is the only one that uses them: a socket closed
        # in another thread while a task here still published aborted the process (libzmq sockets
        # are not thread-safe: `Assertion failed: pfd.revents & POLLIN (src/signaler.cpp)`). Closing
        # does not block; only the context's end waits, up to `linger`, for queued sends to go.
        self._close_sockets()
        self._fanout = self._publish_closed
        if self._own_context:
            await asyncio.get_running_loop().run_in_executor(None, self._ctx.term)
