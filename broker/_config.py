"""Broker settings: one frozen dataclass, validated on construction.

Every socket option the broker sets comes from here, so a test, the CLI and an embedding program
configure the broker the same way.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from observability import BrokerConfigError

DEFAULT_FRONTEND = "tcp://127.0.0.1:5550"
DEFAULT_BACKEND = "tcp://127.0.0.1:5551"
_TRANSPORTS = ("tcp://", "ipc://")
_MAX_PORT = 65535
_MAX_TTL_S = 6553.5  # ZMQ_HEARTBEAT_TTL travels in deciseconds in a 16-bit field


def _endpoints(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise BrokerConfigError(
            f"broker option {name}={value!r} is not a list of endpoints; pass e.g. ['tcp://127.0.0.1:5550']"
        )
    endpoints = tuple(value)
    if not endpoints:
        raise BrokerConfigError(f"broker option {name} is empty; give at least one tcp:// or ipc:// endpoint")
    for endpoint in endpoints:
        if not isinstance(endpoint, str) or not endpoint.startswith(_TRANSPORTS):
            raise BrokerConfigError(
                f"broker {name} endpoint {endpoint!r} is not a tcp:// or ipc:// URL; "
                "use tcp://HOST:PORT or ipc:///path/to/socket"
            )
        if endpoint.startswith("tcp://"):
            _check_port(name, endpoint)
    if len(set(endpoints)) != len(endpoints):
        raise BrokerConfigError(
            f"broker option {name}={list(endpoints)!r} lists an endpoint twice; remove it"
        )
    return endpoints


def _check_port(name: str, endpoint: str) -> None:
    _, _, port = endpoint.rpartition(":")
    if port == "*" or (port.isdigit() and int(port) <= _MAX_PORT):
        return
    raise BrokerConfigError(
        f"broker {name} endpoint {endpoint!r} has no valid port; use tcp://HOST:PORT with PORT "
        "in 0..65535, or tcp://HOST:* for a free one"
    )


def _check_security(config: BrokerConfig) -> None:
    if (config.curve_secret is None) != (config.allow_dir is None):
        given, missing = (
            ("curve_secret", "allow_dir") if config.allow_dir is None else ("allow_dir", "curve_secret")
        )
        raise BrokerConfigError(
            f"broker option {given} is set but {missing} is not; CURVE needs both the broker's secret "
            "key file (--curve-secret) and the allow-list directory (--allow-dir)"
        )
    if config.permissions is not None and config.curve_secret is None:
        raise BrokerConfigError(
            f"broker option permissions={config.permissions!r} needs CURVE: identities are the clients' "
            "keys; give --curve-secret FILE --allow-dir DIR too (without CURVE nothing is checked)"
        )
    if config.curve_secret is not None or config.insecure:
        return
    for name, endpoints in (("frontend", config.frontend), ("backend", config.backend)):
        for endpoint in endpoints:
            if endpoint.startswith("tcp://") and not is_loopback(endpoint):
                raise BrokerConfigError(
                    f"broker {name} endpoint {endpoint!r} is reachable from other hosts but CURVE is off; "
                    "give --curve-secret FILE --allow-dir DIR (see `tickbus keys`), bind to 127.0.0.1, "
                    "or pass --insecure to accept unauthenticated, unencrypted peers"
                )


DEFAULT_MAX_SUBSCRIPTION = 4096
"""Bytes of one subscription a broker accepts by default; hubs refuse to subscribe longer patterns."""
_MAX_SUBSCRIPTION = 65536  # bytes; 96 KiB still survived, 128 KiB overflowed libzmq's stack (measured)
_MIN_STATS_INTERVAL = 0.01  # seconds


def is_loopback(endpoint: str) -> bool:
    """True when the tcp ``endpoint``'s host is a loopback address (127.0.0.0/8, ::1, localhost, lo)."""
    host = endpoint.removeprefix("tcp://").rpartition(":")[0].strip("[]")
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # '*', a host name or an interface name: may face the network
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """Endpoints and socket options of a :class:`~broker.Broker`.

    ``frontend`` endpoints are where publishers connect (an XSUB socket bound to each) and ``backend``
    endpoints where subscribers connect (an XPUB socket); each list may mix ``tcp://`` and ``ipc://``.
    ``tcp://HOST:*`` binds a free port; :attr:`Broker.frontend_endpoints` then tells which.
    Times are in seconds, as in :func:`actors.connect`. Both sockets get the same options.
    """

    frontend: Sequence[str] = field(default=(DEFAULT_FRONTEND,))
    """Endpoints publishers connect to (XSUB); stored as a tuple."""
    backend: Sequence[str] = field(default=(DEFAULT_BACKEND,))
    """Endpoints subscribers connect to (XPUB); stored as a tuple."""
    sndhwm: int = 100_000
    """ZMQ_SNDHWM of both sockets: frames queued per peer before the XPUB drops (0 = unlimited)."""
    rcvhwm: int = 100_000
    """ZMQ_RCVHWM of both sockets (0 = unlimited)."""
    max_msg_size: int = 2 * 1024 * 1024
    """ZMQ_MAXMSGSIZE in bytes: a peer sending a larger frame is disconnected (-1 = no limit)."""
    max_subscription: int = DEFAULT_MAX_SUBSCRIPTION
    """Bytes of one subscription (a key prefix) a subscriber may send; a peer sending a longer one (or
    any larger message upstream) is disconnected before libzmq stores it. libzmq's subscription trie
    recurses per byte: a 128 KiB prefix overflowed its stack and killed the broker (SIGSEGV)."""
    tcp_keepalive: bool = True
    """Enable TCP keepalive, so dead peers behind NAT or firewalls are eventually noticed."""
    tcp_keepalive_idle: int = 60
    """Seconds of silence before the first keepalive probe (ZMQ_TCP_KEEPALIVE_IDLE)."""
    tcp_keepalive_interval: int = 10
    """Seconds between keepalive probes (ZMQ_TCP_KEEPALIVE_INTVL)."""
    tcp_keepalive_count: int = 5
    """Unanswered probes before the connection is dropped (ZMQ_TCP_KEEPALIVE_CNT)."""
    heartbeat_ivl: float = 0.5
    """Seconds between ZMTP heartbeats (ZMQ_HEARTBEAT_IVL; 0 disables heartbeats). A silent peer is
    dropped at most ``heartbeat_ivl + heartbeat_timeout`` seconds after it went silent (2.5 s)."""
    heartbeat_timeout: float = 2.0
    """Seconds without traffic after a heartbeat before a peer is dropped (ZMQ_HEARTBEAT_TIMEOUT)."""
    heartbeat_ttl: float = 2.0
    """Seconds a peer should wait for our traffic before dropping us (ZMQ_HEARTBEAT_TTL)."""
    stats_interval: float = 1.0
    """Seconds between statistics messages on ``('$broker', 'stats')``; 0 publishes none."""
    lvc_patterns: Sequence[tuple[str, ...]] = ()
    """Key patterns whose latest message the broker keeps for snapshots (``broker._lvc``); none: no cache."""
    lvc_max_keys: int = 1_000_000
    """Keys the last-value cache holds at most; the least recently updated go first."""
    lvc_max_bytes: int = 512 * 1024 * 1024
    """Bytes the last-value cache holds at most, roughly (keys, headers, payloads and overhead)."""
    lvc_max_pending: int = 64
    """Snapshot requests that may wait for their inbox's subscription (or a sending slot) at once;
    more are refused (``pending_full``)."""
    lvc_inbox_wait: float = 1.0
    """Seconds a snapshot request waits for its inbox's subscription before it is dropped (``expired``)."""
    lvc_request_rate: float = 10.0
    """Snapshot requests a second one requester (``name@host``) may make, after a burst of
    ``lvc_request_burst``; over it they are refused (``rate_limited``)."""
    lvc_request_burst: int = 50
    """Snapshot requests one requester may make at once before ``lvc_request_rate`` applies."""
    lvc_total_request_rate: float = 200.0
    """Snapshot requests a second from all requesters together (also the burst): made-up requester
    ids cannot get around the per-requester rate."""
    lvc_max_requesters: int = 10_000
    """Requesters whose rate the cache tracks; the least recently asking is forgotten first."""
    lvc_send_hwm: int = 64
    """Reply parts (each about 1 MiB at most, or one entry) the cache queues towards the broker;
    when the queue stays full for a second the reply is abandoned (``abandoned``)."""
    curve_secret: str | None = None
    """The broker's secret certificate file (``tickbus keys generate``): every tcp and ipc connection
    is CURVE-encrypted and only clients in :attr:`allow_dir` are admitted (see ``broker._auth``)."""
    allow_dir: str | None = None
    """Directory of the admitted clients' public certificate files (``NAME.key``); needs curve_secret."""
    insecure: bool = False
    """Allow a non-loopback tcp endpoint without CURVE (anyone who reaches it can read and publish)."""
    permissions: str | None = None
    """A ``permissions.toml`` file (``broker._permissions``): what each allow-listed key may publish,
    subscribe, ask and answer. Needs CURVE. The broker then forwards in Python (``broker._forwarder``),
    checking every message and subscription; without it libzmq's proxy forwards, unchecked."""
    max_subscriptions_per_identity: int = 10_000
    """With permissions: distinct prefixes one identity's connections may hold together; more are
    refused (counted as ``subscription_limit``)."""
    max_subscriptions_total: int = 100_000
    """With permissions: distinct prefixes the broker holds in total; more are refused (counted)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "frontend", _endpoints("frontend", self.frontend))
        object.__setattr__(self, "backend", _endpoints("backend", self.backend))
        overlap = {e for e in set(self.frontend) & set(self.backend) if not e.endswith((":*", ":0"))}
        if overlap:
            raise BrokerConfigError(
                f"broker endpoint {sorted(overlap)[0]!r} is both a frontend and a backend; "
                "give them different ports or paths"
            )
        for name in (
            "sndhwm",
            "rcvhwm",
            "tcp_keepalive_idle",
            "tcp_keepalive_interval",
            "tcp_keepalive_count",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise BrokerConfigError(f"broker option {name}={value!r} is not an integer >= 0")
        for name in (
            "lvc_max_keys",
            "lvc_max_bytes",
            "lvc_max_pending",
            "lvc_request_burst",
            "lvc_max_requesters",
            "lvc_send_hwm",
            "max_subscriptions_per_identity",
            "max_subscriptions_total",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise BrokerConfigError(f"broker option {name}={value!r} is not an integer >= 1")
        patterns = tuple(tuple(p) for p in self.lvc_patterns)
        for pattern in patterns:
            if not pattern or not all(isinstance(s, str) and s for s in pattern):
                raise BrokerConfigError(f"broker option lvc_patterns: {pattern!r} is not a key pattern")
        object.__setattr__(self, "lvc_patterns", patterns)
        if type(self.max_msg_size) is not int or not (self.max_msg_size == -1 or self.max_msg_size > 0):
            raise BrokerConfigError(
                f"broker option max_msg_size={self.max_msg_size!r} is not a byte count > 0 "
                "(or -1 for no limit)"
            )
        if type(self.max_subscription) is not int or not 1 <= self.max_subscription <= _MAX_SUBSCRIPTION:
            raise BrokerConfigError(
                f"broker option max_subscription={self.max_subscription!r} is not a byte count in "
                f"1..{_MAX_SUBSCRIPTION} (longer prefixes can overflow libzmq's stack)"
            )
        if isinstance(self.stats_interval, int | float) and 0 < self.stats_interval < _MIN_STATS_INTERVAL:
            raise BrokerConfigError(
                f"broker option stats_interval={self.stats_interval!r} is below {_MIN_STATS_INTERVAL} s "
                "(it would burn a core); use 0 to publish no statistics"
            )
        for name in (
            "heartbeat_ivl",
            "heartbeat_timeout",
            "heartbeat_ttl",
            "stats_interval",
            "lvc_inbox_wait",
            "lvc_request_rate",
            "lvc_total_request_rate",
        ):
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value < 0
            ):
                raise BrokerConfigError(f"broker option {name}={value!r} is not a number of seconds >= 0")
        _check_security(self)
        if self.heartbeat_ttl > _MAX_TTL_S:
            raise BrokerConfigError(
                f"broker option heartbeat_ttl={self.heartbeat_ttl!r} exceeds ZeroMQ's limit of {_MAX_TTL_S} s"
            )
