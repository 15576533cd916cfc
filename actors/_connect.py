"""``actors.connect()``: a broker-connected hub, with endpoints from arguments, environment or defaults."""

from __future__ import annotations

import os

import zmq

from broker import ClientCurve, DecodeLimits

from ._inbound import DEFAULT_MAX_KEY
from ._limits import (
    DEFAULT_MAX_CLOCK_SKEW,
    DEFAULT_MAX_MESSAGE_AGE,
    DEFAULT_MAX_PENDING_ASKS,
    DEFAULT_MAX_SNAPSHOT_ENTRIES,
    HubLimits,
)
from ._redundancy import DEFAULT_REORDER_WINDOW
from ._remote import RemoteHub

DEFAULT_FRONTEND = "tcp://127.0.0.1:5550"
DEFAULT_BACKEND = "tcp://127.0.0.1:5551"


async def connect(
    frontend: str | list[str] | None = None,
    backend: str | list[str] | None = None,
    *,
    name: str = "hub",
    wait: float | None = 5.0,
    hwm: int = 100_000,
    heartbeat_ivl: float = 0.5,
    heartbeat_timeout: float = 2.0,
    max_payload: int = 1024 * 1024,
    max_key: int = DEFAULT_MAX_KEY,
    decode_limits: DecodeLimits | None = None,
    max_remote_subscriptions: int = 100_000,
    max_streams: int = 100_000,
    linger: float = 1.0,
    context: zmq.Context[zmq.Socket[bytes]] | None = None,
    idle_heartbeat: float = 1.0,
    slow_after: float = 1.0,
    curve: ClientCurve | None = None,
    max_pending_asks: int = DEFAULT_MAX_PENDING_ASKS,
    max_snapshot_entries: int = DEFAULT_MAX_SNAPSHOT_ENTRIES,
    max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
    max_message_age: float = DEFAULT_MAX_MESSAGE_AGE,
    reorder_window: float = DEFAULT_REORDER_WINDOW,
    max_lag: float | None = None,
) -> RemoteHub:
    """Connect to a tickbus broker and return a hub with the aiopubsub API.

    Endpoints default to ``$TICKBUS_FRONTEND`` / ``$TICKBUS_BACKEND``, then
    ``tcp://127.0.0.1:5550`` / ``:5551``. With ``wait`` (seconds) it returns only once both
    connections are up, raising :class:`ConnectError` otherwise; ``wait=None`` returns at once
    and ZeroMQ keeps trying in the background.

    Several brokers (no single point of failure): give lists, one backend per frontend in the same
    order (``frontend=[A, B], backend=[A2, B2]``; in the environment, TOML or on the command line a
    comma-separated string). The hub publishes every message through every broker and delivers
    each message once, in order per stream, whichever broker brought it first; the later copies
    are counted as ``redundant``, and a gap is counted only when no broker brought the message
    within ``reorder_window`` seconds (see ``actors._redundancy``). With ``wait`` it returns once
    one broker is up; losing one of several is a warning, not an outage. Brokers named by host run
    their connections on a ZeroMQ I/O thread each (libzmq resolves the name on every reconnect,
    blocking that thread: shared, a broker gone while DNS does not answer stalled the other's
    traffic too); a ``context`` of your own needs ``io_threads`` of at least the number of brokers
    for that, else they share its threads.

    Liveness: ``heartbeat_ivl``/``heartbeat_timeout`` are ZeroMQ's ZMTP heartbeats, which drop a
    silent connection (a dead broker, a cut link) at most ``heartbeat_ivl + heartbeat_timeout``
    seconds after it went silent (2.5 s by default). Every
    ``idle_heartbeat`` seconds a hub that has published sends a heartbeat message, which tells
    subscribers "quiet" from "gone" and counts losses at the tail of a stream (0 disables).
    A hub processing messages older than ``slow_after`` seconds flags itself slow (0 disables).
    See ``actors._liveness``.

    Overload: a hub that stays behind its queues for ``max_lag`` seconds, handing its handlers
    messages older than that, discards what waited, unread and counted (``skimmed``, and as gaps),
    up to messages a quarter of that old (see ``actors._skim``). By default half the heartbeat's
    timeout (1 s); ``math.inf`` never: the handlers then work through every queued message, however
    old, and a reader much slower than the flood loses its connection from time to time instead
    (its queue goes with it). A hub held by a full mailbox for half the heartbeat's timeout
    discards either way: its connection depends on it.

    Untrusted input: ``max_payload`` bounds the bytes of one payload either way (larger ones are
    refused on publish and dropped, counted, on receipt); ``decode_limits`` bounds what decoding a
    received one may build (``broker.DecodeLimits``; its ``max_bytes`` is ``max_payload``);
    ``max_remote_subscriptions`` bounds the subscriptions of the rest of the bus this hub stores to
    know who listens (further ones are refused and counted: keep it above what the bus really uses);
    ``max_streams`` bounds the (publisher, key) sequences it tracks (``actors.SequenceTracker``);
    ``max_key`` the bytes of one encoded key (longer ones are refused on publish and dropped,
    counted as ``oversize``, on receipt; at least 263, a reply key to the longest inbox).

    Security: ``curve`` (e.g. ``ClientCurve.from_files(broker_key, my_secret)``) makes both
    connections CURVE-encrypted and authenticated; without it, ``$TICKBUS_CURVE_SERVERKEY`` and
    ``$TICKBUS_CURVE_SECRET`` name the key files, if set (see ``broker._curve``).

    Bounds on what peers can make the hub hold or believe (:class:`HubLimits`, each counted when it
    bites): ``max_pending_asks`` (asks waiting for a reply, and replies held for an inbox not yet
    routed), ``max_snapshot_entries`` (entries of one snapshot reply), ``max_clock_skew`` and
    ``max_message_age`` (seconds a sender's timestamp may be ahead or behind and still count for
    lag and latency; outside: ``skewed``).
    """
    limits = HubLimits(
        max_pending_asks=max_pending_asks,
        max_snapshot_entries=max_snapshot_entries,
        max_clock_skew=max_clock_skew,
        max_message_age=max_message_age,
    )
    hub = RemoteHub(
        frontend or os.environ.get("TICKBUS_FRONTEND") or DEFAULT_FRONTEND,
        backend or os.environ.get("TICKBUS_BACKEND") or DEFAULT_BACKEND,
        reorder_window=reorder_window,
        name=name,
        hwm=hwm,
        heartbeat_ivl=heartbeat_ivl,
        heartbeat_timeout=heartbeat_timeout,
        max_payload=max_payload,
        max_key=max_key,
        decode_limits=decode_limits,
        max_remote_subscriptions=max_remote_subscriptions,
        max_streams=max_streams,
        linger=linger,
        context=context,
        idle_heartbeat=idle_heartbeat,
        slow_after=slow_after,
        max_lag=max_lag,
        curve=curve if curve is not None else ClientCurve.from_env(),
    )
    hub.set_limits(limits)
    if wait is not None:
        try:
            await hub.wait_connected(wait)
        except BaseException:
            await hub.close()
            raise
    return hub
