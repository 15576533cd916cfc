"""Socket options and binding, with ZeroMQ's errors translated into one-line :class:`BindError` s.

ipc endpoints need care: libzmq unlinks an existing socket file when it binds, which would silently
steal the path from a live broker. So before binding we probe the file: if something accepts a
connection there we refuse; if nothing listens (a leftover of a killed process) we remove it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

import zmq
from loguru import logger

from observability import BindError

from ._config import BrokerConfig

_IPC = "ipc://"


def configure(sock: zmq.Socket[bytes], config: BrokerConfig, *, subscribers: bool = False) -> None:
    """Apply ``config``'s options to a frontend or backend (``subscribers``) socket before it binds.

    Subscribers send only subscriptions, so the backend's inbound limit is ``max_subscription`` (plus
    the (un)subscribe flag byte): a longer one disconnects the peer before libzmq's trie stores it.
    """
    sock.setsockopt(zmq.LINGER, 0)
    if subscribers and config.permissions is not None:
        sock.setsockopt(zmq.XPUB_MANUAL, 1)  # the checked forwarder decides which subscriptions apply
    endpoints = config.backend if subscribers else config.frontend
    if any(e.startswith("tcp://[") for e in endpoints):  # tcp://[::1]:P needs IPv6 on (off by default)
        sock.setsockopt(zmq.IPV6, 1)
    sock.setsockopt(zmq.SNDHWM, config.sndhwm)
    sock.setsockopt(zmq.RCVHWM, config.rcvhwm)
    limit = config.max_msg_size
    if subscribers and (limit == -1 or config.max_subscription + 1 < limit):
        limit = config.max_subscription + 1
    sock.setsockopt(zmq.MAXMSGSIZE, limit)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1 if config.tcp_keepalive else 0)
    if config.tcp_keepalive:
        sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, config.tcp_keepalive_idle)
        sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, config.tcp_keepalive_interval)
        sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, config.tcp_keepalive_count)
    sock.setsockopt(zmq.HEARTBEAT_IVL, round(config.heartbeat_ivl * 1000))
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, round(config.heartbeat_timeout * 1000))
    sock.setsockopt(zmq.HEARTBEAT_TTL, round(config.heartbeat_ttl * 1000))


def bind_all(sock: zmq.Socket[bytes], role: str, endpoints: tuple[str, ...]) -> list[str]:
    """Bind ``sock`` to each endpoint; return the endpoints as bound (``tcp://h:*`` gets its port)."""
    bound: list[str] = []
    for endpoint in endpoints:
        if endpoint.startswith(_IPC):
            _clear_stale_ipc(role, endpoint)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise bind_error(role, endpoint, exc.errno) from exc
        bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
    return bound


_ADDRESS = "bind to 127.0.0.1, 0.0.0.0 (or *) or a local interface's address"
_VALID = "use tcp://HOST:PORT, tcp://HOST:* or ipc:///path/to/socket"
_REASONS: dict[int, str] = {
    errno.EADDRINUSE: "is already bound by another process; pick a free port or stop it",
    errno.EACCES: "cannot be bound: permission denied; use a port above 1023 "
    "or an ipc path in a directory you can write",
    errno.EADDRNOTAVAIL: f"names no address of this host; {_ADDRESS}",
    errno.ENODEV: f"names no address or interface of this host; {_ADDRESS}",
    errno.ENOENT: "is in a directory that does not exist; create the directory first",
    errno.ENAMETOOLONG: "is longer than a unix socket path may be (107 bytes); use a shorter path",
    errno.EINVAL: f"is not a valid endpoint; {_VALID}",
    errno.EPROTONOSUPPORT: f"uses a transport the broker does not support; {_VALID}",
}


def bind_error(role: str, endpoint: str, code: int | None) -> BindError:
    """The one-line error for failing to bind ``endpoint`` with ``errno`` ``code``."""
    reason = _REASONS.get(code or 0)
    if reason is None:
        reason = f"cannot be bound ({os.strerror(code or 0)}); check the address and permissions"
    return BindError(f"broker {role} endpoint {endpoint!r} {reason}")


def remove_ipc_files(endpoints: tuple[str, ...]) -> None:
    """After closing: remove the socket files of ``endpoints`` that nobody listens on any more."""
    for endpoint in endpoints:
        path = _ipc_path(endpoint)
        if path is not None and _is_socket(path) and _listening(path) is False:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _ipc_path(endpoint: str) -> str | None:
    if not endpoint.startswith(_IPC):
        return None
    path = endpoint[len(_IPC) :]
    if not path or path == "*" or path.startswith("@"):  # wildcard or Linux abstract namespace: no file
        return None
    return path


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False


def _listening(path: str) -> bool | None:
    """True when something accepts connections on the unix socket ``path``, False when nothing
    does, None when we cannot tell (e.g. no permission)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return False
        except OSError as exc:
            logger.debug("could not probe ipc socket {}: {}", path, exc)
            return None
        return True


def _clear_stale_ipc(role: str, endpoint: str) -> None:
    path = _ipc_path(endpoint)
    if path is None:
        return
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise bind_error(role, endpoint, exc.errno) from exc
    where = f"broker {role} endpoint {endpoint!r}"
    if not stat.S_ISSOCK(mode):
        raise BindError(
            f"{where} names {path!r}, which exists and is not a socket; remove it or pick another path"
        )
    listening = _listening(path)
    if listening:
        raise BindError(f"{where} is already bound by another process; pick another path or stop it")
    if listening is None:
        return  # let libzmq's own bind report what is wrong
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise bind_error(role, endpoint, exc.errno) from exc
    logger.info("removed stale ipc socket file {} (nothing was listening)", path)
