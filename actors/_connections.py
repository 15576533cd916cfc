"""A broker-connected hub's sockets and the state of their connections.

Per broker an XPUB to its frontend and a SUB to its backend, each with a monitor socket whose
events (handshake, disconnection, a refused CURVE handshake) say which brokers are up: a hub is
connected while one broker has a live session on both. A receiving socket whose connection is lost
is replaced unread (:meth:`BrokerConnections._renew_sub`: libzmq issue 3937). The reader
(:mod:`actors._reading`), the sender (:mod:`actors._sending`) and the rest of the hub
(:mod:`actors._remote`) build on this class.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from typing import cast

import zmq
import zmq.backend
from loguru import logger
from zmq.utils.monitor import recv_monitor_message

from broker import ClientCurve
from observability import ConnectError

from ._hub import Hub
from ._inbound import Inbound
from ._liveness import HEARTBEAT_PREFIX
from ._redundancy import RedundantTracker

_recv = zmq.backend.Socket.recv  # the Cython method: pyzmq's Python wrapper costs ~130 ns a call
_SIDES = ("frontend", "backend")  # the broker sockets of _pub and _sub, by monitor index
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: the IntFlag's `&` costs ~0.7 us
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_MONITOR_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | _HANDSHAKE_FAILED
# A receiving socket whose connection to its broker is lost is replaced, its queue discarded, and
# the new one connects this long after (libzmq's reconnect interval, RECONNECT_IVL): see _renew_sub.
_RENEW_S = 0.1


def _pending(sock: zmq.Socket[bytes]) -> bool:
    """True when ``sock`` holds a message to read (``ZMQ_EVENTS`` also takes the socket's pending
    commands, as a receive would); False once it is closed."""
    try:
        return bool(cast("int", sock.getsockopt(_EVENTS)) & _POLLIN)
    except zmq.ZMQError:
        return False


class BrokerConnections(Hub):
    """The sockets to the brokers, their monitors and what they say (see the module's docstring).

    :class:`actors.RemoteHub` sets up the state annotated here and calls :meth:`_open_sockets`.
    """

    _refused = False  # set when the broker refuses a handshake (CURVE keys): wait_connected says so
    renewed = 0
    """Receiving sockets replaced after their connection was lost (see :meth:`_renew_sub`)."""
    frontends: list[str]
    backends: list[str]
    frontend: str
    backend: str
    _ctx: zmq.Context[zmq.Socket[bytes]]
    _own_context: bool
    _by_name: bool
    _curve: ClientCurve | None
    _closed: bool
    _loop: asyncio.AbstractEventLoop
    _inbound: Inbound
    _connected: list[bool]
    _connected_event: asyncio.Event
    _disconnects: int
    _broker_losses: int
    _cut: int | None
    _prefix_refs: dict[bytes, int]

    def _on_sub_readable(self) -> None:  # the reader's (actors._reading): a renewed socket's
        raise NotImplementedError

    def _open_sockets(self, brokers: int, hwm: int, ivl: float, timeout: float, linger: float) -> None:
        # One XPUB and one SUB per broker. With several, each broker's sockets are their own: a
        # broker whose queue is full or that is gone costs its copy, never the others' (and
        # ZMQ_IMMEDIATE queues nothing for a broker while it is away).
        self._pubs: list[zmq.Socket[bytes]] = []
        self._subs: list[zmq.Socket[bytes]] = []
        self._monitors: list[zmq.Socket[bytes]] = []  # pub 0, sub 0, pub 1, sub 1, ...
        # Brokers named by host: each broker's connections on an I/O thread of their own, where the
        # context has one per broker (a hub's own then has). libzmq resolves a host name on every
        # reconnect, blocking, in that thread. Shared, a broker gone while DNS does not answer (one
        # outage often brings the other) held every connection of the hub, the other broker's too:
        # nothing through it for as long as the resolver waits, again at every reconnect (libzmq
        # issue 2961). Brokers by address resolve nothing: one thread, ~7 % more 1->1 throughput
        # on 2 cores than two.
        separate = self._by_name and self._ctx.get(zmq.IO_THREADS) >= brokers
        self._sub_options = (hwm, ivl, timeout, linger, separate)  # a replacement SUB's (_renew_sub)
        self._renewing: dict[int, asyncio.TimerHandle] = {}  # broker -> its new SUB's connect
        for index in range(brokers):
            pub = self._socket(zmq.XPUB, hwm, ivl, timeout, linger)
            pub.setsockopt(zmq.XPUB_NODROP, 1)
            pub.setsockopt(zmq.XPUB_MANUAL, 1)  # subscriptions are stored only once accepted
            if brokers > 1:
                pub.setsockopt(zmq.IMMEDIATE, 1)
            sub = self._new_sub(index, ())
            if separate:
                pub.setsockopt(zmq.AFFINITY, 1 << index)
            self._pubs.append(pub)
            self._subs.append(sub)
            self._monitors += [
                pub.get_monitor_socket(_MONITOR_EVENTS),
                sub.get_monitor_socket(_MONITOR_EVENTS),
            ]
        self._pub, self._sub = self._pubs[0], self._subs[0]
        # one frame from a broker, or zmq.Again: the Cython method, pyzmq's wrapper costs ~130 ns
        self._receivers = [functools.partial(_recv, sub, zmq.NOBLOCK) for sub in self._subs]
        for index, sock in enumerate(self._monitored()):
            endpoint = self._endpoint(index)
            try:
                sock.connect(endpoint)
            except zmq.ZMQError as exc:
                self._close_sockets()
                if self._own_context:
                    self._ctx.term()  # nothing was sent: it does not wait
                raise ConnectError(f"cannot connect to broker endpoint {endpoint!r}: {exc.strerror}") from exc

    def _monitored(self) -> list[zmq.Socket[bytes]]:
        """The broker sockets in monitor order: pub 0, sub 0, pub 1, sub 1, ..."""
        return [sock for pair in zip(self._pubs, self._subs, strict=True) for sock in pair]

    def _endpoint(self, index: int) -> str:
        """The broker endpoint of monitor ``index``."""
        return self.frontends[index // 2] if index % 2 == 0 else self.backends[index // 2]

    def _socket(self, kind: int, hwm: int, ivl: float, timeout: float, linger: float) -> zmq.Socket[bytes]:
        sock = self._ctx.socket(kind)
        if any(e.startswith("tcp://[") for e in (*self.frontends, *self.backends)):
            sock.setsockopt(zmq.IPV6, 1)  # a broker at tcp://[::1]:P (IPv6 is off by default)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.LINGER, int(linger * 1000))
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)  # back within ~0.5 s of the broker's return
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(ivl * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(timeout * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TTL, int(timeout * 1000))
        sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
        if self._curve is not None:
            self._curve.apply(sock)
        return sock

    # -- publishing ---------------------------------------------------------------------------
    # -- connection state ---------------------------------------------------------------------
    def _on_monitor(self, index: int) -> None:
        monitor = self._monitors[index]
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                return
            side = _SIDES[index % 2]
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if self._disconnects:
                    logger.info(
                        "hub {}: reconnected to the broker's {} {}", self.name, side, self._endpoint(index)
                    )
                self._connected[index] = True
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                first = index - index % 2
                was_up = self._connected[first] and self._connected[first + 1]
                connected, self._connected[index] = self._connected[index], False
                if connected and (len(self._subs) == 1 or was_up):
                    self._lost(index)  # with several brokers: once per broker, not per socket
                self._disconnects += 1
                if connected and index % 2:  # a receiving socket: replaced, its later events with it
                    self._renew_sub(index // 2)
                    break
            elif event["event"] & _HANDSHAKE_FAILED:
                self._refused = True
                self._log.warning(
                    "handshake:" + side,
                    "hub {}: the broker's {} {} refused the handshake ({}); check the CURVE keys "
                    "(TICKBUS_CURVE_SERVERKEY, TICKBUS_CURVE_SECRET) and the broker's allow-list",
                    self.name,
                    side,
                    self._endpoint(index),
                    "no CURVE key" if self._curve is None else "key refused or wrong broker key",
                )
        up = self._brokers_up()
        tracker = self._inbound.tracker
        if isinstance(tracker, RedundantTracker):
            tracker.up = [self._connected[2 * i + 1] for i in range(len(self._subs))]
        if up:
            self._connected_event.set()
        else:
            self._connected_event.clear()

    def _look_at_connections(self, every: int = 2) -> None:
        """Take the sockets' pending connection events: the receiving sockets' (monitors 1, 3, ...),
        before reading them (see :meth:`_renew_sub`), or ``every=1`` all of them."""
        for index in range(2 - every, len(self._monitors), every):
            if _pending(self._monitors[index]):
                self._on_monitor(index)

    def _renew_sub(self, index: int) -> None:
        """Replace broker ``index``'s receiving socket, whose connection was lost, by a new one.

        libzmq keeps a connecting socket's queue across a reconnection. When that queue was full as
        the connection went (its reader held by a full mailbox through a burst, say, until the
        heartbeat timed out), its write side stays marked full, and the first read that frees room
        once the new connection is made restarts an engine that never stopped: libzmq aborts the
        process (``Assertion failed: _input_stopped (src/stream_engine_base.cpp:396)``; libzmq issue
        3937, open). ZMQ_IMMEDIATE, which would drop the queue with the connection, leaves a SUB
        socket receiving nothing in libzmq 4.3.5. So the socket is closed unread, with what it
        queued before the loss (sequence gaps, counted as its publishers are heard again), and a
        new one with the same subscriptions connects :data:`_RENEW_S` later, as libzmq would have
        reconnected. The reader looks at these events before it reads after a pause
        (:data:`_LOOK_AFTER_S`), so no read reaches the old queue once a new connection could exist.
        """
        old, slot = self._subs[index], 2 * index + 1
        old_monitor = self._monitors[slot]
        for sock in (old, old_monitor):
            self._loop.remove_reader(sock.FD)
        old.disable_monitor()
        old_monitor.close(linger=0)
        old.close(linger=0)
        sub = self._new_sub(index, self._prefix_refs)
        monitor = sub.get_monitor_socket(_MONITOR_EVENTS)
        self._subs[index], self._monitors[slot] = sub, monitor
        self._receivers[index] = functools.partial(_recv, sub, zmq.NOBLOCK)
        if index == 0:
            self._sub = sub
        if self._cut == index:
            self._cut = None
        self._loop.add_reader(sub.FD, self._on_sub_readable)
        self._loop.add_reader(monitor.FD, self._on_monitor, slot)
        if (pending := self._renewing.pop(index, None)) is not None:
            pending.cancel()
        self._renewing[index] = self._loop.call_later(_RENEW_S, self._connect_renewed, index)
        self.renewed += 1

    def _new_sub(self, index: int, prefixes: Iterable[bytes]) -> zmq.Socket[bytes]:
        """Broker ``index``'s receiving socket, subscribed to the heartbeats and to ``prefixes``."""
        hwm, ivl, timeout, linger, separate = self._sub_options
        sub = self._socket(zmq.SUB, hwm, ivl, timeout, linger)
        if separate:
            sub.setsockopt(zmq.AFFINITY, 1 << index)
        for prefix in (HEARTBEAT_PREFIX, *prefixes):  # every hub hears every heartbeat
            sub.setsockopt(zmq.SUBSCRIBE, prefix)
        return sub

    def _connect_renewed(self, index: int) -> None:
        """Connect broker ``index``'s new receiving socket (see :meth:`_renew_sub`)."""
        self._renewing.pop(index, None)
        if self._closed:
            return
        endpoint = self.backends[index]
        try:
            self._subs[index].connect(endpoint)
        except zmq.ZMQError as exc:  # it connected before: only a resource shortage gets here
            self._log.log(
                "ERROR",
                "renew",
                "hub {}: cannot connect to the broker's backend {}: {}",
                self.name,
                endpoint,
                exc,
            )

    def _lost(self, index: int) -> None:
        side = _SIDES[index % 2]
        others = sum(1 for i in range(len(self._subs)) if i != index // 2 and self._broker_up(i))
        if len(self._subs) > 1 and others:
            self._broker_losses += 1
            logger.warning(
                "hub {}: lost broker {}'s {} {}; reconnecting, {} of {} brokers still carry the bus",
                self.name,
                index // 2 + 1,
                side,
                self._endpoint(index),
                others,
                len(self._subs),
            )
        else:
            logger.warning(
                "hub {}: lost the broker's {} {}; reconnecting", self.name, side, self._endpoint(index)
            )

    def _broker_up(self, broker: int) -> bool:
        """Broker ``broker`` (0-based) has a live session on both sockets."""
        return self._connected[2 * broker] and self._connected[2 * broker + 1]

    def _brokers_up(self) -> int:
        """Brokers with a live session on both sockets."""
        return sum(1 for i in range(len(self._subs)) if self._broker_up(i))

    @property
    def connected(self) -> bool:
        """True while both sockets have a live session with a broker (with several: with at least one)."""
        return self._brokers_up() > 0

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait for both connections to the broker; :class:`ConnectError` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._connected_event.wait()
        except TimeoutError:
            if self._refused:
                raise ConnectError(
                    f"the broker at {self.frontend!r} / {self.backend!r} refused this hub's handshake "
                    f"({'no CURVE key' if self._curve is None else 'key not allowed or wrong broker key'}); "
                    "set TICKBUS_CURVE_SERVERKEY / TICKBUS_CURVE_SECRET or add the key to the allow-list"
                ) from None
            raise ConnectError(
                f"no broker answered at frontend {self.frontend!r} / backend {self.backend!r} within "
                f"{timeout}s; start one with `tickbus broker` or set TICKBUS_FRONTEND/TICKBUS_BACKEND"
            ) from None

    def _close_sockets(self) -> None:
        for sock in (*self._pubs, *self._subs):
            sock.disable_monitor()
        for sock in (*self._monitors, *self._subs):
            sock.close(linger=0)
        for sock in self._pubs:
            sock.close()
