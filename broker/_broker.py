"""The broker: libzmq's steerable proxy between an XSUB frontend and an XPUB backend.

Threads:

- the *proxy* thread runs ``zmq.proxy_steerable(frontend, backend, None, control)``. Every message is
  forwarded in C; Python never touches one. With per-identity permissions (``BrokerConfig.permissions``)
  it runs the checked forwarder instead (``broker._forwarder``), which checks every message and
  subscription in Python and answers the same control commands.
- the *side* thread polls what hangs off the proxy: the two sockets' monitors (peer counts), an
  internal XPUB connected to the frontend over inproc (it receives every distinct subscription the
  XSUB passes upstream, and publishes the ``('$broker', 'stats')`` messages), and a wake-up pipe.
- the caller's thread owns the lifecycle: :meth:`Broker.start`, :meth:`Broker.stop`, or the blocking
  :meth:`Broker.run_forever`, which turns SIGTERM/SIGINT into a clean stop.

The control socket is shared by :meth:`Broker.statistics` callers under a lock; ZeroMQ allows a socket
to move between threads when a full memory barrier (the lock) separates the uses.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType, TracebackType

import zmq
from loguru import logger
from zmq.utils.monitor import recv_monitor_message

from observability import BrokerError, real_time_scheduling

from ._auth import CurveAuth
from ._bind import bind_all, configure, remove_ipc_files
from ._checked import Gate
from ._config import BrokerConfig
from ._forwarder import CheckedForwarder
from ._lvc_thread import CacheThread, cache_thread
from ._peer_log import PeerLog, TcpTable, closed_by_peer_of, closing_hosts_of, peer_address
from ._peers import MONITOR_EVENTS, PeerCounter
from ._permissions import Permissions
from ._reserved import instance_name, new_publisher_id
from ._stats import (
    BrokerStatistics,
    ProxyCounters,
    StatsEnvelope,
    SubscriptionTable,
)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_JOIN_TIMEOUT = 5.0
_SIGNAL_CHECK_INTERVAL = 0.1  # s: how late a stop signal delivered to another thread is seen


@dataclass(eq=False)
class _Running:
    """Everything a started broker owns; created by :meth:`Broker.start`, torn down by :meth:`Broker.stop`."""

    ctx: zmq.Context[zmq.Socket[bytes]]
    frontend: zmq.Socket[bytes]
    backend: zmq.Socket[bytes]
    control_proxy: zmq.Socket[bytes]  # the proxy thread's end
    control: zmq.Socket[bytes]  # ours, used under Broker._lock
    monitors: dict[zmq.Socket[bytes], PeerCounter]
    subscriptions_socket: zmq.Socket[bytes]  # internal XPUB on the frontend's inproc endpoint
    wake_r: socket.socket
    wake_w: socket.socket
    envelope: StatsEnvelope
    publishers: PeerCounter
    subscribers: PeerCounter
    started: float = field(default_factory=time.monotonic)
    subscriptions: SubscriptionTable = field(default_factory=SubscriptionTable)
    proxy_thread: threading.Thread | None = None
    lvc: CacheThread | None = None
    side_thread: threading.Thread | None = None
    failure: str | None = None
    auth: CurveAuth | None = None  # CURVE keys and the ZAP allow-list (broker._auth)
    peer_logs: dict[zmq.Socket[bytes], PeerLog] = field(default_factory=dict)  # per monitor
    tcp_table: TcpTable = field(default_factory=TcpTable)  # what the peer logs read, once per batch
    forwarder: CheckedForwarder | None = None  # with permissions: the Python forwarder, else libzmq's


class Broker:
    """A tickbus broker: publishers connect to the frontend endpoints, subscribers to the backend ones.

    >>> broker = Broker(BrokerConfig(frontend=["tcp://127.0.0.1:*"], backend=["tcp://127.0.0.1:*"]))
    >>> broker.start()
    >>> broker.statistics().subscribers
    0
    >>> broker.stop()

    Or ``with Broker(config) as broker: ...``; or :meth:`run_forever` until SIGTERM/SIGINT.
    """

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self._config = config if config is not None else BrokerConfig()
        self.publisher_id = new_publisher_id(instance_name("broker", self._config.frontend))
        """The publisher id in the header of this broker's statistics messages."""
        self._lock = threading.Lock()  # control socket and the side thread's counters
        self._lifecycle = threading.Lock()
        self._run: _Running | None = None
        self._stop_requested = False  # a plain flag: request_stop() may run in a signal handler
        self._frontend_endpoints: tuple[str, ...] = ()
        self._backend_endpoints: tuple[str, ...] = ()

    @property
    def config(self) -> BrokerConfig:
        """The configuration this broker was created with."""
        return self._config

    @property
    def frontend_endpoints(self) -> tuple[str, ...]:
        """The frontend endpoints as bound (wildcard ports resolved); empty before :meth:`start`."""
        return self._frontend_endpoints

    @property
    def backend_endpoints(self) -> tuple[str, ...]:
        """The backend endpoints as bound (wildcard ports resolved); empty before :meth:`start`."""
        return self._backend_endpoints

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._run is not None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind every endpoint and start forwarding; :class:`BindError` (nothing left bound) on failure."""
        with self._lifecycle:
            if self._run is not None:
                raise BrokerError("broker is already running; call stop() before start()")
            run = self._open()
            self._run = run
            run.proxy_thread = threading.Thread(
                target=self._proxy_main, args=(run,), name="tickbus-broker-proxy", daemon=True
            )
            run.side_thread = threading.Thread(
                target=self._side_main, args=(run,), name="tickbus-broker-stats", daemon=True
            )
            run.proxy_thread.start()
            run.side_thread.start()
            if run.lvc is not None:
                run.lvc.start()
        logger.info(
            "broker {} forwarding frontend={} backend={}",
            self.publisher_id,
            ",".join(self._frontend_endpoints),
            ",".join(self._backend_endpoints),
        )
        if (real_time := real_time_scheduling()) is not None:
            logger.info("broker {} runs at {} (real-time scheduling)", self.publisher_id, real_time)

    def request_stop(self) -> None:
        """Ask a running broker to stop, without waiting; safe from signal handlers and any thread.

        :meth:`run_forever` returns soon after; otherwise call :meth:`stop` to finish.
        """
        run = self._run
        if run is not None:
            self._stop_requested = True
            with contextlib.suppress(OSError):  # a full pipe already holds a wake-up
                run.wake_w.send(b"\0")

    def stop(self) -> None:
        """Stop forwarding, close every socket (linger 0) and the context; a no-op when not running."""
        with self._lifecycle:
            run = self._run
            if run is None:
                return
            self.request_stop()
            if run.side_thread is not None and run.side_thread is not threading.current_thread():
                run.side_thread.join(_JOIN_TIMEOUT)
            with self._lock:
                self._run = None
                run.control.send(b"TERMINATE")
            if run.proxy_thread is not None:
                run.proxy_thread.join(_JOIN_TIMEOUT)
                if run.proxy_thread.is_alive():
                    # closing sockets under a running proxy would crash libzmq: leak them instead
                    logger.error(
                        "broker proxy did not stop within {} s; leaving its sockets open", _JOIN_TIMEOUT
                    )
                    return
            self._close(run)
            self._stop_requested = False
        logger.info("broker {} stopped after {:.1f} s", self.publisher_id, time.monotonic() - run.started)
        if run.failure is not None:
            raise BrokerError(f"broker stopped after an internal failure: {run.failure}")

    def run_forever(
        self, *, on_ready: Callable[[Broker], None] | None = None, handle_signals: bool = True
    ) -> None:
        """Start (unless started), call ``on_ready(self)``, and block until stopped; then clean up.

        With ``handle_signals`` (and when called in the main thread), SIGTERM and SIGINT stop the broker
        cleanly; the previous handlers are restored on return. The handlers are installed before
        ``on_ready`` runs, so a signal sent once the caller announced readiness is always handled.
        """
        previous: dict[signal.Signals, object] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in _STOP_SIGNALS:
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            if self._run is None:
                self.start()
            run = self._run
            if on_ready is not None:
                on_ready(self)
            if run is not None and run.side_thread is not None:
                # Timed joins, not one untimed join: the kernel may deliver SIGTERM to any thread that
                # does not block it (OpenTelemetry's, the log sink's, ours), and then nothing wakes an
                # untimed join for Python to run the handler here (1 stop in 35 hung before this).
                while run.side_thread.is_alive():
                    run.side_thread.join(_SIGNAL_CHECK_INTERVAL)
        finally:
            try:
                self.stop()
            finally:
                self._stop_requested = False  # a signal may have come while start() was failing
                for sig, handler in previous.items():
                    signal.signal(sig, handler)  # type: ignore[arg-type]  # what signal.signal returned

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- statistics -----------------------------------------------------------------------------
    def statistics(self, timeout: float = 1.0) -> BrokerStatistics:
        """A snapshot of the broker's counters (see :class:`BrokerStatistics`).

        Peer and subscription counts trail the network by one pass of the side thread (milliseconds).
        Raises :class:`BrokerError` when not running or when the proxy does not answer in ``timeout`` s.
        """
        with self._lock:
            run = self._run
            if run is None:
                raise BrokerError("broker is not running; call start() before statistics()")
            while run.control.poll(0):  # a reply that came after an earlier caller gave up
                run.control.recv_multipart()
            run.control.send(b"STATISTICS")
            if not run.control.poll(round(timeout * 1000)):
                raise BrokerError(f"broker proxy did not answer STATISTICS within {timeout} s; is it stuck?")
            counters = ProxyCounters.from_frames(run.control.recv_multipart())
            return BrokerStatistics.build(
                counters,
                uptime_s=time.monotonic() - run.started,
                subscribers=run.subscribers.count,
                publishers=run.publishers.count,
                subscriptions=len(run.subscriptions),
                refused=sum(log.refused for log in run.peer_logs.values()),
                lvc=run.lvc.statistics().as_dict() if run.lvc is not None else None,
                checked=run.forwarder is not None,
                denied=run.forwarder.gate.statistics() if run.forwarder is not None else {},
            )

    # -- internals ------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # also before start() has finished: the side thread then exits as soon as it starts
        self._stop_requested = True
        self.request_stop()

    def _open(self) -> _Running:
        config = self._config
        auth = (  # reads the key files, or raises
            CurveAuth(config.curve_secret, config.allow_dir)
            if config.curve_secret is not None and config.allow_dir is not None
            else None
        )
        permissions = _load_permissions(config, auth)
        # one I/O thread: broker._peers relies on monitor events arriving in engine order
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context(io_threads=1)
        opened: list[zmq.Socket[bytes]] = []

        def new(kind: int) -> zmq.Socket[bytes]:
            sock = ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            opened.append(sock)
            return sock

        try:
            frontend, backend = new(zmq.XSUB), new(zmq.XPUB)
            configure(frontend, config)
            configure(backend, config, subscribers=True)
            if auth is not None:
                auth.start(ctx)  # the ZAP handler must exist before a CURVE socket binds
                auth.apply(frontend)
                auth.apply(backend)
            # monitors before binding, so no handshake happens unseen
            publishers, subscribers = PeerCounter(), PeerCounter()
            fe_monitor = frontend.get_monitor_socket(MONITOR_EVENTS)
            opened.append(fe_monitor)
            be_monitor = backend.get_monitor_socket(MONITOR_EVENTS)
            opened.append(be_monitor)
            fe_bound = bind_all(frontend, "frontend", tuple(config.frontend))
            be_bound = bind_all(backend, "backend", tuple(config.backend))
            tag = secrets.token_hex(6)
            inproc = f"inproc://tickbus-broker-frontend-{tag}"
            frontend.bind(inproc)
            control_proxy, control = new(zmq.PAIR), new(zmq.PAIR)
            control_proxy.bind(f"inproc://tickbus-broker-control-{tag}")
            control.connect(f"inproc://tickbus-broker-control-{tag}")
            subs = new(zmq.XPUB)
            subs.connect(inproc)
            inproc_backend = f"inproc://tickbus-broker-backend-{tag}"
            backend.bind(inproc_backend)
            lvc = cache_thread(ctx, config, frontend=inproc, backend=inproc_backend)
        except BaseException:
            for sock in opened:
                sock.close(linger=0)
            if auth is not None:
                auth.stop()
            ctx.term()
            raise
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._frontend_endpoints, self._backend_endpoints = tuple(fe_bound), tuple(be_bound)
        tcp_table = TcpTable()
        return _Running(
            ctx=ctx,
            frontend=frontend,
            backend=backend,
            control_proxy=control_proxy,
            control=control,
            monitors={fe_monitor: publishers, be_monitor: subscribers},
            subscriptions_socket=subs,
            wake_r=wake_r,
            wake_w=wake_w,
            envelope=StatsEnvelope(self.publisher_id, fe_bound, be_bound),
            publishers=publishers,
            subscribers=subscribers,
            lvc=lvc,
            auth=auth,
            forwarder=_forwarder(config, permissions, frontend, backend, control_proxy),
            tcp_table=tcp_table,
            peer_logs={
                monitor: PeerLog(
                    role,
                    peer_address,
                    denied_key=auth.denied_key if auth else _no_denial,
                    closing_hosts=closing_hosts_of(bound, tcp_table),
                    closed_by_peer=closed_by_peer_of(bound, tcp_table),
                )
                for monitor, role, bound in (
                    (fe_monitor, "frontend", fe_bound),
                    (be_monitor, "backend", be_bound),
                )
            },
        )

    def _close(self, run: _Running) -> None:
        if run.lvc is not None:
            run.lvc.stop()  # closes its own sockets, before the context goes
        # the side thread closed its own sockets (monitors, internal XPUB) on its way out
        for sock in (run.frontend, run.backend, run.control_proxy, run.control):
            sock.close(linger=0)
        if run.side_thread is not None and run.side_thread.is_alive():
            logger.error("broker statistics thread did not stop; abandoning its sockets")
            return
        run.wake_r.close()
        run.wake_w.close()
        if run.auth is not None:
            run.auth.stop()
        run.ctx.term()
        remove_ipc_files(self._frontend_endpoints + self._backend_endpoints)

    def _proxy_main(self, run: _Running) -> None:
        try:
            if run.forwarder is not None:
                run.forwarder.run()
            else:
                zmq.proxy_steerable(run.frontend, run.backend, None, run.control_proxy)
        except Exception as exc:  # ZMQError, or a bug in the checked forwarder: stop, do not hang
            run.failure = f"proxy: {exc!r}"
            logger.error("broker proxy stopped unexpectedly: {}", exc)
            self.request_stop()

    def _side_main(self, run: _Running) -> None:
        poller = zmq.Poller()
        for monitor in run.monitors:
            poller.register(monitor, zmq.POLLIN)
        poller.register(run.subscriptions_socket, zmq.POLLIN)
        poller.register(run.wake_r.fileno(), zmq.POLLIN)
        interval = self._config.stats_interval
        next_stats = time.monotonic() + interval
        try:
            # `self._run is run`: a thread abandoned by stop() (its join timed out) that wakes later
            # must end, not run on beside the next start()'s threads
            while not self._stop_requested and self._run is run:
                timeout = math.ceil(max(0.0, next_stats - time.monotonic()) * 1000) if interval else None
                ready = dict(poller.poll(timeout))
                if ready:
                    with self._lock:
                        self._drain(run, ready)
                if run.wake_r.fileno() in ready:
                    with contextlib.suppress(OSError):
                        run.wake_r.recv(4096)
                if interval and time.monotonic() >= next_stats and not self._stop_requested:
                    self._publish_stats(run)
                    next_stats = max(next_stats + interval, time.monotonic())
        except Exception as exc:  # anything here is a bug; stop rather than run half-blind
            run.failure = f"statistics thread: {exc!r}"
            logger.exception("broker statistics thread failed")
            self._stop_requested = True
        finally:
            for monitor in run.monitors:
                monitor.close(linger=0)
            run.subscriptions_socket.close(linger=0)

    def _drain(self, run: _Running, ready: dict[object, int]) -> None:
        # At most a batch of each per pass, under the lock: a storm of connects and disconnects or
        # of subscriptions cannot hold statistics() (the watchdog's check) for longer than a batch;
        # the poller reports what is left at once, and the next pass takes it.
        with run.tcp_table.batch():  # one parse of /proc/net/tcp* per batch, however many peers left
            for monitor, counter in run.monitors.items():
                if monitor in ready:
                    for _ in range(_EVENT_BATCH):
                        try:
                            event = recv_monitor_message(monitor, zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        kind, value = int(event["event"]), int(event["value"])
                        endpoint = event["endpoint"].decode(errors="replace")
                        counter.on_event(kind, value, endpoint)
                        run.peer_logs[monitor].on_event(kind, value, endpoint)
        subs = run.subscriptions_socket
        if subs in ready:
            for _ in range(_SUBSCRIPTION_BATCH):
                try:
                    frame = subs.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                run.subscriptions.apply(frame)

    def _publish_stats(self, run: _Running) -> None:
        try:
            stats = self.statistics()
        except BrokerError as exc:
            logger.warning("broker statistics skipped: {}", exc)
            return
        frames = run.envelope.frames(stats, mono_ns=time.monotonic_ns(), wall_ns=time.time_ns())
        try:
            run.subscriptions_socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            logger.debug("broker statistics message {} dropped: internal queue full", run.envelope.seq)


_EVENT_BATCH = 1_000  # monitor events per socket handled in one pass under the lock
_SUBSCRIPTION_BATCH = 10_000  # subscription frames handled in one pass under the lock


def _load_permissions(config: BrokerConfig, auth: CurveAuth | None) -> Permissions | None:
    if config.permissions is None:
        return None
    permissions = Permissions.load(config.permissions)  # or BrokerConfigError naming file and field
    strangers = sorted(auth.identities - set(permissions.identities)) if auth is not None else []
    if strangers:
        logger.warning(
            "broker permissions {}: no table for allow-listed key(s) {}; they may connect but neither "
            "publish nor subscribe",
            permissions.path,
            ", ".join(strangers),
        )
    return permissions


def _forwarder(
    config: BrokerConfig,
    permissions: Permissions | None,
    frontend: zmq.Socket[bytes],
    backend: zmq.Socket[bytes],
    control: zmq.Socket[bytes],
) -> CheckedForwarder | None:
    if permissions is None:
        return None
    gate = Gate(
        permissions,
        max_per_identity=config.max_subscriptions_per_identity,
        max_total=config.max_subscriptions_total,
    )
    return CheckedForwarder(frontend, backend, control, gate)


def _no_denial(host: str | None) -> None:
    return None  # without CURVE there is no ZAP handler, so no denied key to name
