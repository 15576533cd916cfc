"""Who connected, who left and who was refused: the broker's peer log, from socket monitor events.

Problem: an operator needs "peer 10.0.0.2:40112 gone from the frontend" when a host drops off
(ZMTP heartbeats close its connection) and "refused peer 10.0.0.9:51022: CURVE key ... not on the
allow-list" when a stranger knocks; libzmq's monitor events carry only a file descriptor
(ACCEPTED, DISCONNECTED) and, for a listening socket, the bind address.

Approach: the socket layer resolves the descriptor's peer address at ACCEPTED (``getpeername`` on a
duplicate, while libzmq still holds the connection) and hands it in through ``address_of``; this
class keeps fd -> (address, since) and reports at DISCONNECTED. A HANDSHAKE_FAILED_* event comes
immediately before the DISCONNECTED of its own connection (see :mod:`broker._peers`), so that
DISCONNECTED is a refusal, counted in :attr:`PeerLog.refused`. ZAP denials (``broker._auth``) know
the refused client's IP and key; ``denied_key`` adds the key, and the IP when the descriptor was
gone before it could be read.

Leaving is not failing: a peer that closes its connection (a clean exit, a restart, a crash too:
the kernel closes a dead process's sockets, and its own supervisor and the hubs' "publisher gone"
say it crashed) "left" the broker, at INFO. A connection the broker closed itself (ZMTP heartbeats
unanswered: a host off the network, a cut link) is "gone", a WARNING. Which side closed first shows
in the kernel's state of the connection at DISCONNECTED: the closing side passes through
FIN_WAIT/TIME_WAIT, the other through CLOSE_WAIT/LAST_ACK (:func:`closed_by_peer`).

Limits: a client refused for want of CURVE (mechanism mismatch) is dropped within microseconds; its
descriptor is often closed before the monitor event is read (on loopback about one attempt in ten).
Its host is then taken from the kernel's closing connections on the broker's ports
(``/proc/net/tcp*``, FIN_WAIT..TIME_WAIT, about a minute): named when there is one candidate, listed
when several, "unknown" when none (a reset connection leaves no trace). Refusals are logged at most
once a second per host and kind of failure (a generic handshake failure must not hide the line
naming a refused key), with a count of those summarised; per host for the first
:data:`MAX_HOST_TOPICS` hosts refused, then for all other hosts together (a peer that knocks from
ever new addresses, an IPv6 /64 say, must neither grow the log's table nor escape its rate limit).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator

import zmq

from observability import RateLimitedLog

_FAILED: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed (no CURVE, or the wrong broker key?)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed (no CURVE, or the wrong broker key?)",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "its CURVE key is not on the allow-list",
}
UNKNOWN = "unknown address"
MAX_HOST_TOPICS = 64  # hosts whose refusals are rate-limited apart; later ones share one limit


class PeerLog:
    """Peer addresses of one listening socket (``role``: frontend or backend), gone and refused peers."""

    __slots__ = (
        "_address_of",
        "_closed_by_peer",
        "_closing_hosts",
        "_denied_key",
        "_failure",
        "_hosts",
        "_log",
        "_now",
        "_open",
        "refused",
        "role",
    )

    def __init__(
        self,
        role: str,
        address_of: Callable[[int], str | None],
        *,
        denied_key: Callable[[str | None], tuple[str, str] | None] = lambda host: None,
        closing_hosts: Callable[[], set[str]] = set,
        closed_by_peer: Callable[[str], bool] = lambda address: True,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role = role
        self.refused = 0
        """Connections refused at the handshake (no CURVE, wrong key, not on the allow-list)."""
        self._address_of = address_of
        self._denied_key = denied_key
        self._closing_hosts = closing_hosts
        self._closed_by_peer = closed_by_peer
        self._now = now
        self._open: dict[int, tuple[str, float]] = {}
        self._failure: int | None = None
        self._hosts: set[str] = set()  # hosts with a log topic of their own (at most MAX_HOST_TOPICS)
        self._log = RateLimitedLog(interval=1.0, broker_role=role)

    def on_event(self, event: int, value: int, endpoint: str) -> None:
        """One monitor event (``value`` is the fd for ACCEPTED and DISCONNECTED)."""
        if endpoint.startswith("inproc://"):
            return
        if event == zmq.EVENT_ACCEPTED:
            self._open[value] = (self._address_of(value) or UNKNOWN, self._now())
        elif event in _FAILED:
            self._failure = event
        elif event == zmq.EVENT_DISCONNECTED:
            failure, self._failure = self._failure, None
            address, since = self._open.pop(value, (UNKNOWN, self._now()))
            if failure is None:
                self._departed(address, self._now() - since)
            else:
                self._refuse(failure, address)

    def _departed(self, address: str, seconds: float) -> None:
        if address == UNKNOWN or self._closed_by_peer(address):
            self._log.log(
                "INFO",
                "left",
                "peer left: {} closed its connection to the broker {} after {:.1f} s",
                address,
                self.role,
                seconds,
            )
        else:
            self._log.warning(
                "gone",
                "peer gone: {} dropped by the broker {} after {:.1f} s (no heartbeat answered, or a "
                "protocol error)",
                address,
                self.role,
                seconds,
            )

    def address(self, fd: int) -> str | None:
        """The address recorded for the open connection ``fd``, if any."""
        entry = self._open.get(fd)
        return entry[0] if entry is not None else None

    def _refuse(self, failure: int, address: str) -> None:
        self.refused += 1
        host = None if address == UNKNOWN else address.rpartition(":")[0].strip("[]")
        reason = _FAILED[failure]
        if failure == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            denied = self._denied_key(host)  # (host, key) of the ZAP denial for this peer
            if denied is not None:
                if address == UNKNOWN:
                    address = host = denied[0]
                reason = f"its CURVE key {denied[1]} is not on the allow-list"
        if address == UNKNOWN:  # closed before its address was read: the kernel still knows the host
            hosts = self._closing_hosts()
            if len(hosts) == 1:
                host = next(iter(hosts))
                address = f"{host} (closed before its port could be read)"
            elif hosts:
                address = f"{UNKNOWN} (one of {', '.join(sorted(hosts))})"
        topic = host or UNKNOWN
        if topic not in self._hosts:
            if len(self._hosts) < MAX_HOST_TOPICS:
                self._hosts.add(topic)
            else:
                topic = "other hosts"
        self._log.warning(
            f"refused:{topic}:{failure}",  # per reason too: one kind must not hide another
            "refused peer {} on the broker {}: {} (refused so far: {})",
            address,
            self.role,
            reason,
            self.refused,
        )


def peer_address(fd: int) -> str | None:
    """``host:port`` (tcp) or ``ipc pid N uid N`` of the peer of the connected socket ``fd``; None when
    it is closed already. Works on a duplicate, so libzmq's descriptor is never touched."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            if sock.family == socket.AF_UNIX:
                pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
                return f"ipc pid {pid} uid {uid}"
            host, port = sock.getpeername()[:2]
    except OSError:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_CLOSING_STATES = {"04", "05", "06", "07", "08", "09", "0B"}  # FIN_WAIT1 .. CLOSING, not LISTEN
_CLOSED_HERE = {"01", "04", "05", "06", "0B"}  # ESTABLISHED (not closed yet), FIN_WAIT1/2, TIME_WAIT, CLOSING


Rows = list[tuple[list[str], int]]  # (fields of a /proc/net/tcp* row, address family)


class TcpTable:
    """The kernel's tcp tables, read afresh on each look, or once per :meth:`batch`.

    The broker handles monitor events in batches (``Broker._drain``). Every event of a batch
    happened before the batch is read, so one parse serves them all: a storm of 10,000 disconnects
    parses ``/proc/net/tcp*`` once per batch, not once per event (12.6 ms per 10k rows each, under
    the broker's statistics lock).
    """

    def __init__(self) -> None:
        self._rows: Rows | None = None
        self._batching = False

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Within the block, the tables are read at most once."""
        self._batching = True
        try:
            yield
        finally:
            self._batching, self._rows = False, None

    def rows(self) -> Rows:
        """The rows now (or as read earlier in this batch)."""
        if self._rows is not None:
            return self._rows
        rows = _read_tcp_rows()
        if self._batching:
            self._rows = rows
        return rows


def _read_tcp_rows() -> Rows:
    parsed: Rows = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) >= 4:
                parsed.append((fields, family))
    return parsed


def closed_by_peer(address: str, ports: frozenset[int], table: TcpTable | None = None) -> bool:
    """True unless this host's tcp connection from one of its ``ports`` to ``address`` (``host:port`` or
    ``[v6]:port``) shows that this side closed it (FIN_WAIT, TIME_WAIT, CLOSING) or has not seen the
    peer close (ESTABLISHED): a peer that closes first leaves us in CLOSE_WAIT/LAST_ACK, or nothing (ipc,
    or already gone). Only ``ports`` count: the peer's port may also be the far end of another socket's
    connection, such as one an earlier process on another port closed (TIME_WAIT lingers a minute)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return True
    host = host.strip("[]")
    for fields, family in table.rows() if table is not None else _read_tcp_rows():
        remote_host, _, remote_port = fields[2].rpartition(":")
        if (
            int(remote_port, 16) == int(port)
            and int(fields[1].rpartition(":")[2], 16) in ports
            and _kernel_address(remote_host, family) == host
        ):
            return fields[3] not in _CLOSED_HERE
    return True


def closing_hosts(ports: frozenset[int], table: TcpTable | None = None) -> set[str]:
    """Remote hosts of this network namespace's tcp connections on ``ports`` that are closing or
    closed within the last minute (TIME_WAIT): who a connection refused in microseconds came from."""
    hosts: set[str] = set()
    for fields, family in table.rows() if table is not None else _read_tcp_rows():
        if fields[3] in _CLOSING_STATES and int(fields[1].rpartition(":")[2], 16) in ports:
            hosts.add(_kernel_address(fields[2].rpartition(":")[0], family))
    return hosts


def _kernel_address(hexed: str, family: int) -> str:
    raw = bytes.fromhex(hexed)  # /proc/net/tcp*: 32-bit words in host (little-endian) order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    text = socket.inet_ntop(family, raw)
    return text.removeprefix("::ffff:") if family == socket.AF_INET6 else text


def _tcp_ports(endpoints: Iterable[str]) -> frozenset[int]:
    return frozenset(int(e.rpartition(":")[2]) for e in endpoints if e.startswith("tcp://"))


def closing_hosts_of(endpoints: Iterable[str], table: TcpTable | None = None) -> Callable[[], set[str]]:
    """:func:`closing_hosts` for the ports of the bound tcp ``endpoints`` (none for ipc only)."""
    ports = _tcp_ports(endpoints)
    return (lambda: closing_hosts(ports, table)) if ports else set


def closed_by_peer_of(endpoints: Iterable[str], table: TcpTable | None = None) -> Callable[[str], bool]:
    """:func:`closed_by_peer` for connections to the ports of the bound tcp ``endpoints``."""
    ports = _tcp_ports(endpoints)
    return lambda address: closed_by_peer(address, ports, table)
