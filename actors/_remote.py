"""The broker-connected hub: the same API as :class:`Hub`, routed through a tickbus broker.

Sockets: an XPUB connected to the broker's frontend (publishing; being an XPUB it also learns which
key prefixes anyone subscribes to, so a key nobody wants is never serialised, and with XPUB_NODROP a
full send queue is counted instead of silently dropped) and a SUB connected to the backend. The XPUB
is in manual mode: a subscription reaches its table only once this hub accepts it, so what the rest
of the bus subscribes costs at most ``max_remote_subscriptions`` prefixes of at most
``max_subscription`` bytes (longer and further ones are refused, counted and logged).
Everything is delivered through the broker, including to subscribers in this same process, so
there is one order per publisher and one code path.

Receiving: ``loop.add_reader`` on the SUB socket's file descriptor, draining it with non-blocking
reads (ZeroMQ's descriptor is edge-triggered) for at most :data:`_SLICE_S` seconds per callback, so
timers and other callbacks get their turn during a burst; each frame goes to :class:`Inbound`, the
socket-free protocol step that decodes, checks, sequence-tracks and routes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import zmq
import zmq.backend
from loguru import logger
from zmq.utils.monitor import recv_monitor_message

from broker import (
    DEFAULT_MAX_SUBSCRIPTION,
    FIXED,
    FORMAT_VERSION,
    HEARTBEAT,
    KEY_END,
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
from broker import encode_traced_header as _encode_traced_header
from broker import pack_payload as _pack_payload
from broker import reset_payload_packer as _reset_payload_packer
from observability import ConnectError, EnvelopeError, InvalidKeyError

from ._hub import BrokerCopies, Hub, HubStatistics, Message, Route
from ._inbound import DEFAULT_MAX_KEY, Inbound, MessageCut
from ._liveness import DEFAULT_MAX_INTERVAL, HEARTBEAT_PREFIX, HubWatch
from ._redundancy import DEFAULT_REORDER_WINDOW, RedundantTracker
from ._sequence import SequenceTracker
from ._skim import discard
from ._snapshot import SnapshotClient
from ._wanted import BusSubscriptions

_SLICE_S = 0.001  # seconds of reading (and inline handling) per reader callback before yielding
_CHUNK = 32  # messages between two looks at the clock
_REST_FRAMES = 1_000  # frames of a multi-frame message read per reader callback (~1 ms): see _skip_cut
_CACHE_LIMIT = 100_000  # keys whose frame start, numbering and "wanted" a hub keeps at hand
# numbers kept of keys evicted from that cache: past it, the hub numbers every key afresh under a
# new publisher id (_renumber), so what a publisher remembers is bounded whatever keys it is made
# to publish (a reply per asker-chosen inbox, keys taken from the bus)
_SEQS_LIMIT = 100_000
_DONTWAIT = zmq.DONTWAIT
_send = zmq.backend.Socket.send  # the Cython methods: pyzmq's Python wrapper costs ~130 ns a call
_recv = zmq.backend.Socket.recv
_pack_fixed = FIXED.pack
_perf = time.perf_counter
_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns
_HOUSEKEEPING = 0.02  # seconds between safety drains of every socket while the hub is busy (_sweep)
_HOUSEKEEPING_IDLE = 0.1  # ... once it sent and received nothing since the last (idle heartbeats allowing)
_LAG_EVERY = 0.1  # seconds between lag checks
_SIDES = ("frontend", "backend")  # the broker sockets of _pub and _sub, by monitor index
_LIVENESS_EVERY = 0.5  # seconds between checks for publishers gone quiet
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)  # plain ints: the IntFlag's `&` costs ~0.7 us
# a reply to the longest inbox must fit max_key, and so does a heartbeat (a publisher id holds its name)
_MIN_MAX_KEY = len(encode_key((REPLY, "x" * MAX_PUBLISHER_ID)))
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_MONITOR_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | _HANDSHAKE_FAILED
# A receiving socket whose connection to its broker is lost is replaced, its queue discarded, and
# the new one connects this long after (libzmq's reconnect interval, RECONNECT_IVL): see _renew_sub.
_RENEW_S = 0.1
# the reader looks at its sockets' connection events first when it has not run for this long (held,
# stalled, idle): a connection may have been lost and remade meanwhile (see _renew_sub)
_LOOK_AFTER_S = 0.02
# A skim (RemoteHub._skim) discards at most this many queues' worth of frames (hwm each: the hub's,
# the broker's, and the kernel's buffers between), and stops at a frame that waited less than this
# share of the time that set it off.
_SKIM_QUEUES = 4
_SKIM_FRESH = 0.25


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


def _publisher_bytes(publisher_id: str) -> bytes:
    raw = publisher_id.encode()
    if len(raw) > MAX_PUBLISHER_ID:  # the header's length field is one byte
        raise ValueError(
            f"hub name in {publisher_id[:40]!r}... is too long: "
            f"its publisher id must fit {MAX_PUBLISHER_ID} bytes"
        )
    return raw


def _pending(sock: zmq.Socket[bytes]) -> bool:
    """True when ``sock`` holds a message to read (``ZMQ_EVENTS`` also takes the socket's pending
    commands, as a receive would); False once it is closed."""
    try:
        return bool(cast("int", sock.getsockopt(_EVENTS)) & _POLLIN)
    except zmq.ZMQError:
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


class RemoteHub(Hub):
    """A :class:`Hub` whose publish and subscribe go through a tickbus broker. Use :func:`connect`."""

    holds = 0
    """Times reading stopped because a consumer's queue was full (see :meth:`hold`)."""
    skimmed = 0
    """Frames (one a message, from tickbus peers) discarded unread from the hub's queues while
    reading was held for long, or fell behind a flood (see :meth:`_skim`); counted as gaps too, as
    their publishers are heard again."""
    renewed = 0
    """Receiving sockets replaced after their connection was lost (see :meth:`_renew_sub`)."""
    subscription_slices = 0
    """Times reading the bus's (un)subscriptions stopped after its time slice with more waiting."""
    renumbered = 0
    """Times this hub numbered its keys afresh under a new publisher id: it had published more keys
    than it keeps numbers for (``_CACHE_LIMIT`` + ``_SEQS_LIMIT``)."""
    _renumbering = False  # saying goodbye before renumbering: its heartbeat key may be new too

    _refused = False  # set when the broker refuses a handshake (CURVE keys): wait_connected says so

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
        self._publisher_bytes = _publisher_bytes(self.publisher_id)
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
        # behind this long, and handing out messages this old, a reader discards (_behind)
        self._max_lag = max_lag if max_lag is not None else self._skim_after
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
        self._skimming: asyncio.TimerHandle | asyncio.Handle | None = None  # held or behind (_skim)
        self._behind_since: float | None = None  # the reader last left messages waiting since (_behind)
        self._discarding = False  # a skim runs because the reader fell behind: it reads nothing meanwhile
        # half the heartbeat's timeout (ZeroMQ's is the interval when 0); no heartbeat, no skim
        beat = timeout if timeout > 0 else ivl
        self._skim_after = max(_LOOK_AFTER_S, beat / 2) if beat > 0 else None
        self._skim_left: list[int] = []  # frames the running skim may still discard, per socket
        self._read_at = 0.0  # when the reader last looked at the clock (_perf)
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

    # -- liveness and lag (see actors._liveness) ------------------------------------------------
    def _send_heartbeat(self, now: float) -> None:
        own = self._heartbeat_kb
        streams = [(o[0], o[1]) for o in self._out.values() if o[0] != own]
        streams.extend(self._seqs.items())
        payload = self._watch.schedule.next_payload(now, self._published + self._publish_skipped, streams)
        published, skipped = self._published, self._publish_skipped
        try:
            self.publish(self._heartbeat_key, payload)
        except Exception as exc:  # a full queue is counted by publish; anything else is a bug here
            self._log.warning("heartbeat", "hub {}: heartbeat not sent: {}", self.name, exc)
        # control traffic: `published` and `publish_skipped` count the application's messages
        self._published, self._publish_skipped = published, skipped

    def _send_farewell(self) -> None:
        """The last heartbeat: "bye" and every key's latest seq, so subscribers log a clean departure
        at INFO and count what the tail of the stream lost. Not from a hub that sends no heartbeats
        (``idle_heartbeat=0``) or never published: nobody tracks it."""
        if self._watch.schedule.interval <= 0 or not (self._published or self._publish_skipped):
            return
        own = self._heartbeat_kb
        streams = [(o[0], o[1]) for o in self._out.values() if o[0] != own]
        streams.extend(self._seqs.items())
        published, skipped = self._published, self._publish_skipped
        try:
            self.publish(self._heartbeat_key, self._watch.schedule.farewell(streams))
        except Exception as exc:  # closing goes on whatever happens here
            self._log.warning("heartbeat", "hub {}: farewell heartbeat not sent: {}", self.name, exc)
        self._published, self._publish_skipped = published, skipped

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
    def publish(self, key: tuple[str, ...], message: Any, trace: list[str] | None = None) -> int:
        """Send ``message`` at ``key`` to the broker (skipped, and counted, when nobody subscribes).

        The payload is encoded either way: one that cannot be encoded (``TypeError``) or is over
        ``max_payload`` (``EnvelopeError``) raises whether or not anyone subscribes.

        ``trace`` is a sampled message's ``[traceparent, tracestate]`` (see ``observability.tracing``).
        Returns the message's sequence number on ``key``, 0 when it was skipped.
        """
        out = self._out.get(key)
        if out is None:
            out = self._new_stream(key)
        if out[2] != self._wanted.epoch:  # subscriptions changed since this key was last checked
            out[2] = self._wanted.epoch
            out[3] = self._wanted.wants(out[0])
        try:  # encoded even when nobody listens: a payload that cannot go raises now, not in production
            payload = _pack_payload(message)
        except Exception:
            _reset_payload_packer()
            raise
        if len(payload) > self._max_payload:
            raise EnvelopeError(
                f"payload of {len(payload)} bytes on {key} exceeds max_payload={self._max_payload}; "
                "send less or raise the limit on every hub and the broker"
            )
        if not out[3]:
            # Skipped, but numbered: if someone did want it (the broker was down, a subscription
            # was in flight), the next message they get shows this one as a gap. A subscriber that
            # was not subscribed starts its stream afresh (see remove_subscriber), so no false gap.
            out[1] += 1
            self._publish_skipped += 1
            return 0
        seq: int = out[1] + 1  # only after encoding: a refused payload must not look like a gap
        out[1] = seq
        if trace is None:
            frame = (
                out[4]
                + _pack_fixed(FORMAT_VERSION, 0, len(self._publisher_bytes), seq, _monotonic_ns(), _time_ns())
                + self._publisher_bytes
                + payload
            )
        else:
            header = _encode_traced_header(self._publisher_bytes, seq, _monotonic_ns(), _time_ns(), trace)
            frame = out[4] + header + payload
        if self._fanout is None:
            try:  # one frame on the Cython socket (format 2); XPUB_NODROP refuses it when the queue is full
                _send(self._pub, frame, _DONTWAIT)
            except zmq.Again:
                self._publish_dropped += 1
                self._log.warning(
                    "publish-hwm", "send queue to the broker is full: dropped a message on {}", key
                )
        else:
            self._fanout(frame, key)
        self._published += 1
        return seq

    # several brokers: _send_each; a closed hub: _publish_closed
    _fanout: Callable[[bytes, tuple[str, ...]], None] | None = None

    def _send_each(self, frame: bytes, key: tuple[str, ...]) -> None:
        """Send one frame to every broker; it is dropped (``publish_dropped``) only if none took it."""
        sent = False
        for index, pub in enumerate(self._pubs):
            try:
                _send(pub, frame, _DONTWAIT)
                sent = True
            except zmq.Again:
                self._publish_dropped_by_broker[index] += 1
                self._log.warning(
                    "publish-hwm:broker",
                    "send queue to broker {} ({}) is full: its copy of a message on {} is dropped "
                    "({} so far); the other brokers carry it",
                    index + 1,
                    self.frontends[index],
                    key,
                    self._publish_dropped_by_broker[index],
                )
        if not sent:
            self._publish_dropped += 1
            self._log.warning(
                "publish-hwm", "send queues to every broker are full: dropped a message on {}", key
            )

    def _new_stream(self, key: tuple[str, ...]) -> list[Any]:
        kb = encode_key(key)
        if len(kb) > self._max_key:  # every subscriber would drop it (Inbound): refuse it here, loudly
            raise EnvelopeError(
                f"key {tuple(key)[:3]}... is {len(kb)} bytes encoded, over max_key={self._max_key}: "
                "every subscriber would drop it; use a shorter key or raise the limit on every hub"
            )
        if len(self._out) >= _CACHE_LIMIT and not self._renumbering:
            if len(self._seqs) + len(self._out) > _SEQS_LIMIT:
                self._renumber()
            else:  # evict, keeping every key's sequence so it never restarts
                self._seqs.update((o[0], o[1]) for o in self._out.values())
                self._out.clear()
        # wire key, seq, subscription epoch, wanted, the frame's start
        out: list[Any] = [kb, self._seqs.get(kb, 0), -1, False, kb + KEY_END]
        self._out[Key.create_from(key)] = out
        return out

    def _renumber(self) -> None:
        """More keys than this hub keeps numbers for: say goodbye under the current publisher id
        (subscribers count the tails it reports and forget it, at INFO), then number every key
        afresh under a new one (to subscribers a new incarnation: its streams start anew, no gap
        and no duplicate against the old numbers). The hub's own id (its inbox) stays."""
        self._renumbering = True
        try:
            self._send_farewell()
        finally:
            self._renumbering = False
        self._out.clear()
        self._seqs.clear()
        self._watch.schedule.restart()
        self.sender_id = new_publisher_id(self.name)
        self._publisher_bytes = _publisher_bytes(self.sender_id)
        self.renumbered += 1
        self._log.log(
            "INFO",
            "renumbered",
            "hub {}: published over {} keys: numbering them afresh as {} ({} times so far)",
            self.name,
            _CACHE_LIMIT + _SEQS_LIMIT,
            self.sender_id,
            self.renumbered,
        )

    def has_subscribers(self, key: tuple[str, ...] = Key("*")) -> bool:
        """True when a subscriber anywhere on the broker would receive ``key`` (``('*',)``: anything)."""
        return self._wanted.wants_key(key)

    async def wait_for_subscribers(self, key: tuple[str, ...], timeout: float = 5.0) -> None:
        """Wait until a subscription somewhere on the broker covers ``key``; ``TimeoutError`` otherwise."""
        async with asyncio.timeout(timeout):
            while not self._wanted.wants(encode_key(key)):
                self._prefixes_changed.clear()
                await self._prefixes_changed.wait()

    def _on_pub_readable(self) -> None:
        # for at most _SLICE_S, as the reader: a peer that subscribes and unsubscribes without end
        # (each change reaches every publisher) must not hold the loop; the rest waits its turn
        if self._closed:
            return
        epoch = self._wanted.epoch
        end = _perf() + _SLICE_S
        more = False
        for index, pub in enumerate(self._pubs):
            more = self._read_subscriptions(pub, index, end) or more
        if self._wanted.epoch != epoch:
            self._prefixes_changed.set()
        if more:
            self.subscription_slices += 1
            self._loop.call_soon(self._on_pub_readable)

    def _read_subscriptions(self, pub: zmq.Socket[bytes], broker: int, end: float) -> bool:
        """Take the (un)subscriptions one broker forwarded (actors._wanted decides, the socket follows:
        it is in manual mode, so only what this hub accepts reaches its table), until ``end``
        (``_perf()``); True when it stopped there with more waiting."""
        wanted = self._wanted
        while True:
            if _perf() >= end:
                return True
            try:
                msg = pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return False
            except zmq.ZMQError:
                return False
            flag, prefix = msg[:1], msg[1:]
            if flag == b"\x01":
                refused = wanted.subscribe(broker, prefix)
                if refused is None:
                    pub.setsockopt(zmq.SUBSCRIBE, prefix)  # for the pipe it came from
                else:
                    self._log.warning(
                        "subscription-refused",
                        "hub {}: refused a subscription from the bus ({}); {} refused so far",
                        self.name,
                        refused,
                        wanted.refused,
                    )
            elif flag == b"\x00":
                if wanted.unsubscribe(broker, prefix):
                    pub.setsockopt(zmq.UNSUBSCRIBE, prefix)
            else:  # a subscriber-side peer sent something that is not a (un)subscription
                self._malformed_upstream += 1
                self._log.warning(
                    "upstream",
                    "hub {}: ignored {} upstream non-subscription messages",
                    self.name,
                    self._malformed_upstream,
                )

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

    def _on_sub_readable(self) -> None:
        # One frame per message (format 2): a plain recv returns bytes, ~0.2 us a message. The
        # callback reads, and routes (sync handlers run inline), for at most _SLICE_S seconds, then
        # yields to the loop's other callbacks: a burst never starves timers or other actors, and
        # what this process cannot take waits in ZeroMQ's queues (or is dropped there, counted as
        # gaps by the sequence numbers) instead of being decoded to be dropped.
        now = self._reading_starts()
        if now is None:
            return
        read = self._inbound.read
        receive = self._receivers[0]
        end = now + _SLICE_S
        while not self._held:
            try:
                if read(receive, zmq.Again, _CHUNK) < _CHUNK:
                    self._read_at = _perf()
                    self._behind_since = None  # caught up
                    return
            except MessageCut:  # its other frames in the next callbacks, the loop's others between
                self._resume_skip()
                return
            if self._read_on(end):
                break
        self._behind()
        if not self._held and not self._discarding:
            self._loop.call_soon(self._on_sub_readable)  # more may be waiting: come back after others ran

    def _reading_starts(self) -> float | None:
        """The clock as a reader callback starts, or None if it must not read (closed, held, or in
        the frames of a refused message that are not all skipped yet)."""
        if self._closed or self._held or self._discarding:
            return None
        now = _perf()
        if now - self._read_at > _LOOK_AFTER_S:  # held, stalled or idle since: see _renew_sub
            self._look_at_connections()
        self._read_at = now
        if self._cut is not None and not self._skip_cut():
            return None
        return now

    def _read_on(self, end: float) -> bool:
        """After a chunk: True if the reader callback is out of time (a backlog), else it reads on."""
        now, last = _perf(), self._read_at
        self._read_at = now
        if now < end:
            return False
        self._watch.backlog_at = time.monotonic()  # out of time with messages waiting: a backlog
        if now - last > _LOOK_AFTER_S:  # a handler held this chunk up: look first next time
            self._read_at = 0.0
        return True

    def _on_subs_readable(self) -> None:
        # _on_sub_readable for several brokers: each broker's socket in turn, a chunk at a time,
        # the tracker told which broker each frame came from (actors._redundancy).
        now = self._reading_starts()
        if now is None:
            return
        # Inbound.read_copies: the common shapes inline (the next copy from this broker, delivered
        # or counted redundant), anything else through Inbound.handle, the tracker seeing every copy
        read = self._inbound.read_copies
        tracker: RedundantTracker = self._inbound.tracker  # type: ignore[assignment]
        end = now + _SLICE_S
        while not self._held:
            idle, cut = True, False
            try:
                for index, receive in enumerate(self._receivers):
                    tracker.source = index
                    if read(receive, zmq.Again, _CHUNK):
                        idle = False
            except MessageCut:  # as in _on_sub_readable
                cut = True
            if tracker.held:
                self._release()
            if cut:
                self._resume_skip()
                return
            if idle:
                self._read_at = _perf()
                self._behind_since = None  # caught up
                return
            if self._read_on(end):
                break
        self._behind()
        if not self._held and not self._discarding:
            self._loop.call_soon(self._on_sub_readable)

    def _behind(self) -> None:
        """The reader left messages waiting (out of time, or held by a full mailbox).

        Behind for longer than ``max_lag`` without once finding its queues empty, and
        handing its handlers messages that waited longer than that (the lag the sweep measured),
        the hub discards what waits in its queues (:meth:`_skim`): a reader slower than a flood
        otherwise hands its handlers ever older messages (seconds old within seconds), and loses
        its connection when ZeroMQ's heartbeat answers, queued behind the flood, come too late.
        Both are needed: a peer stamping its messages old cannot make a hub that keeps up discard,
        and a burst the reader drains in time loses nothing.
        """
        now, since, after = _perf(), self._behind_since, self._max_lag
        if since is None:
            self._behind_since = now
        elif (
            after is not None
            and now - since > after
            and self._watch.lag.lag > after
            and not (self._held or self._skimming is not None or self._closed)
        ):
            self._behind_since = None
            self._discarding = True
            self._skimming = self._loop.call_soon(self._skim, True)

    def _release(self) -> None:
        """Deliver the held frames whose turn came; wake up again when the oldest hold's window ends."""
        tracker: RedundantTracker = self._inbound.tracker  # type: ignore[assignment]
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        inbound = self._inbound
        for source, frame in tracker.take_ready(time.monotonic()):
            tracker.source, tracker.releasing = source, True
            inbound.received -= 1  # counted when it arrived
            try:
                inbound.handle(frame)
            finally:
                tracker.releasing = False
        deadline = tracker.next_deadline()
        if deadline is not None and not self._closed:
            self._expiry = self._loop.call_later(max(0.0, deadline - time.monotonic()), self._release)

    def hold(self, consumer: object) -> None:
        """Stop reading the bus while ``consumer``'s queue is full (ZeroMQ's queues hold or drop
        meanwhile, and the sequence numbers count what they drop as gaps). Held for longer than
        half the heartbeat's timeout, the hub discards what waits in its queues (:meth:`_skim`)."""
        if consumer not in self._held:
            self._held.add(consumer)
            self.holds += 1
            self._watch.backlog_at = time.monotonic()
            if self._skimming is None and self._skim_after is not None and not self._closed:
                self._skimming = self._loop.call_later(self._skim_after, self._skim, True)

    def release(self, consumer: object) -> None:
        """Read on once no consumer's queue is full."""
        if self._held and consumer in self._held:
            self._held.discard(consumer)
            if not self._held and not self._closed:
                if self._skimming is not None:
                    self._skimming.cancel()
                    self._skimming = None
                    self._discarding = False
                self._loop.call_soon(self._on_sub_readable)

    def _skim(self, first: bool) -> None:
        """Discard, unread, what waits in the receiving sockets' queues: while reading is held, or
        once when the reader fell behind (:meth:`_behind`).

        A hold that outlasts the heartbeat's timeout lost the connection: ZeroMQ stops reading a
        connection whose queue is full, the broker's answers to the heartbeat wait behind the
        burst, and the heartbeat times out (a reconnection, the subscriptions sent again, the
        queue lost anyway: see :meth:`_renew_sub`). A reader slower than a flood does the same a
        little later: ZeroMQ reads the connection again only each time half the queue was taken.
        So every half timeout of a hold, or of a reader that never caught up, the frames that
        waited are discarded, up to the first that waited less than :data:`_SKIM_FRESH` of that
        (:data:`_SKIM_QUEUES` queues' worth at most, per socket; see :mod:`actors._skim`): ZeroMQ
        reads the connection again, heartbeats included, and what the handlers get next is recent.
        A slice of :data:`_SLICE_S` per callback; counted in :attr:`skimmed` (frames), and as gaps
        once their publishers are heard again.
        """
        self._skimming = None
        if not (self._held or self._discarding) or self._closed or self._skim_after is None:
            self._discarding = False
            return
        self._look_at_connections()  # not a queue whose connection was lost and made again
        left = self._skim_left
        if first:  # frames: the queues before the newest (this hub's, the broker's, the kernel's)
            left[:] = [_SKIM_QUEUES * self._sub_options[0]] * len(self._subs)
        fresh = (self._skim_after if self._held or self._max_lag is None else self._max_lag) * _SKIM_FRESH
        age_of, inbound = self._watch.lag.frame_age, self._inbound
        deadline = _perf() + _SLICE_S
        out_of_time, discarded = False, 0
        for index, receive in enumerate(self._receivers):
            if not left[index]:
                continue
            if len(self._subs) > 1:
                inbound.tracker.source = index
            run = discard(
                receive,
                zmq.Again,
                left[index],
                fresh=fresh,
                age_of=age_of,
                heartbeat=HEARTBEAT_PREFIX,
                keep=inbound.handle,
                deadline=deadline,
            )
            # done, or empty with nothing taken: this queue is through; empty after some frames, it
            # may be refilling (ZeroMQ reads the connection again), so it is looked at once more
            left[index] = 0 if run.done or (run.empty and not run.taken) else left[index] - run.taken
            if run.taken:
                inside = not run.empty and self._subs[index].get(zmq.RCVMORE)
                self._cut = index if inside else (None if self._cut == index else self._cut)
            discarded += run.taken - run.kept
            if not (run.done or run.empty):
                out_of_time = True
                break
        if discarded:
            self.skimmed += discarded
            self._log.log(
                "WARNING",
                "skim" if self._held else "behind",
                "hub {}: {} for over {:.1f} s: discarded what waited in its queues (counted as gaps)",
                self.name,
                "reading held by a full mailbox" if self._held else "reading behind a flood",
                self._skim_after,
            )
        if out_of_time or any(left):
            self._skimming = self._loop.call_soon(self._skim, False)
        elif self._held:
            self._discarding = False
            self._skimming = self._loop.call_later(self._skim_after, self._skim, True)
        else:  # behind: read on, from the newest
            self._discarding = False
            self._loop.call_soon(self._on_sub_readable)

    def _rest_of_message(self) -> tuple[list[bytes], bool]:
        """The remaining frames of a multi-frame message (format 1, or not tickbus): the first three
        kept, later ones as empty placeholders (the count is only described), and whether that was
        all of them. At most ``_REST_FRAMES`` are read here; past that the reader stops
        (``MessageCut``) and skips the others in its next callbacks (:meth:`_skip_cut`).
        """
        source = self._inbound.tracker.source
        sock = self._subs[source]
        rest: list[bytes] = []
        while sock.getsockopt(zmq.RCVMORE):
            if len(rest) >= _REST_FRAMES:
                self._cut = source
                return rest, False
            # a message's frames arrive together: never Again here; past the third, not copied
            if len(rest) < 3:
                rest.append(sock.recv(zmq.NOBLOCK))
            else:
                sock.recv(zmq.NOBLOCK, copy=False)
                rest.append(b"")
        return rest, True

    def _skip_cut(self) -> bool:
        """Read and discard up to ``_REST_FRAMES`` more frames of the refused message; True once it ended
        (the reader goes on), else one callback (:meth:`_resume_skip`) comes back for more."""
        sock = self._subs[self._cut]  # type: ignore[index]
        for _ in range(_REST_FRAMES):
            if not sock.getsockopt(zmq.RCVMORE):
                self._cut = None
                return True
            sock.recv(zmq.NOBLOCK, copy=False)  # dropped: never copied out of ZeroMQ's message
        self._resume_skip()
        return False

    def _resume_skip(self) -> None:
        # one pending callback at most for the rest of a cut message, whoever ran out of frames:
        # the reader also runs for the other broker's socket, which stays readable meanwhile, and
        # for the sweep, and a callback each would have made a chain each, all skipping at once
        if self._skip_soon is None:
            self._skip_soon = self._loop.call_soon(self._skip_turn)

    def _skip_turn(self) -> None:
        self._skip_soon = None
        self._on_sub_readable()

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

    def _close_sockets(self) -> None:
        for sock in (*self._pubs, *self._subs):
            sock.disable_monitor()
        for sock in (*self._monitors, *self._subs):
            sock.close(linger=0)
        for sock in self._pubs:
            sock.close()

    def _publish_closed(self, frame: bytes, key: tuple[str, ...]) -> None:
        raise ConnectError(f"hub {self.name!r} is closed: nothing more can be published on {key}")
