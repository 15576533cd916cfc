"""CURVE on the broker's sockets, and a ZAP handler that admits only allow-listed client keys.

With ``BrokerConfig.curve_secret`` and ``allow_dir`` set, the frontend and backend are CURVE servers
(every tcp and ipc connection is encrypted and authenticated; the broker's own inproc sockets have
no handshake and need none), and pyzmq's :class:`zmq.auth.thread.ThreadAuthenticator` answers
libzmq's ZAP requests on the broker's context, in its own thread, off the forwarding path: a client
is admitted when its public key is in one of the ``*.key`` certificate files of ``allow_dir``. The
directory is re-read when it changes (its mtime), so adding or removing a client needs no broker
restart; a client refused before its key was added must reconnect, as libzmq treats a ZAP refusal
as final for that connecting socket.

Refusals are counted and logged by :mod:`broker._peer_log` from the socket monitors; this module
remembers the IP and key of each ZAP denial so that log line can name the key.

A connection admitted by ZAP gets the *identity* of its key as its ZMQ ``User-Id`` (every message
and subscription it sends carries it as metadata): the key file's name without ``.key``
(``allowed/feed.key`` -> ``feed``; of two files with one key, the first in name order). The checked
forwarder (``broker._forwarder``) looks its permissions up by that name.

Nothing here runs per message: ZAP is asked once per connection attempt.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
import zmq.utils.z85
from loguru import logger
from zmq.auth.thread import ThreadAuthenticator

from observability import BrokerConfigError, ConfigError

from ._curve import load_key_pair

_REMEMBERED_DENIALS = 256


_MAX_KEY_FILE = 64 * 1024  # bytes: a certificate file is ~300


def load_allow_list(directory: str | Path) -> set[bytes]:
    """The Z85 public keys of the ``*.key`` files in ``directory``; raises :class:`BrokerConfigError`."""
    return set(load_identities(directory))


def load_identities(directory: str | Path) -> dict[bytes, str]:
    """Z85 public key -> identity (the file's stem) of the ``*.key`` files in ``directory``."""
    folder = Path(directory)
    if not folder.is_dir():
        raise BrokerConfigError(
            f"broker allow-list directory {str(folder)!r} does not exist; create it and copy the clients' "
            "NAME.key files (from `tickbus keys generate`) into it"
        )
    keys: dict[bytes, str] = {}
    try:
        for path in sorted(folder.glob("*.key")):
            # only regular files: opening a FIFO named x.key would block the broker forever
            info = path.stat()
            if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_KEY_FILE:
                logger.warning("broker allow-list: ignored {} (not a regular key file)", path)
                continue
            public, _ = zmq.auth.load_certificate(path)
            keys.setdefault(public, path.stem)
        return keys
    except (OSError, ValueError, IndexError) as exc:
        raise BrokerConfigError(
            f"broker allow-list directory {str(folder)!r} holds a file that is not a pyzmq certificate "
            f"({exc}); keep only NAME.key files from `tickbus keys generate` there"
        ) from exc


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, with our allow-list as its CURVE credentials provider."""

    def __init__(self, context: zmq.Context[Any], auth: CurveAuth) -> None:
        super().__init__(context)
        self._auth = auth
        self._address = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # one request at a time in this thread: the callback below sees this request's address
        self._address = msg[3].decode(errors="replace") if len(msg) > 3 else ""
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        """The credentials-provider hook of :meth:`configure_curve_callback` (``key`` is Z85)."""
        return self._auth.admits(self._address, key)

    def curve_user_id(self, client_public_key: bytes) -> str:
        """The ``User-Id`` of an admitted connection: its key's identity (the key file's stem)."""
        return self._auth.identity(zmq.utils.z85.encode(client_public_key))


class CurveAuth:
    """The broker's CURVE keys and ZAP allow-list, for one broker context."""

    def __init__(self, secret_file: str, allow_dir: str) -> None:
        try:
            self.public_key, self._secret_key = load_key_pair(secret_file, "broker secret key file")
        except ConfigError as exc:
            raise BrokerConfigError(str(exc)) from exc
        self.allow_dir = Path(allow_dir)
        self._allowed = load_identities(self.allow_dir)
        self._mtime = self._dir_mtime()
        if not self._allowed:
            logger.warning(
                "broker allow-list {} holds no client keys: every client will be refused", self.allow_dir
            )
        self._lock = threading.Lock()  # denials: written by the ZAP thread, read by the side thread
        self._denials: OrderedDict[str, str] = OrderedDict()  # host -> last denied key
        self._authenticator: _Authenticator | None = None

    def start(self, context: zmq.Context[Any]) -> None:
        """Install the ZAP handler on ``context``; call before any CURVE socket binds."""
        authenticator = _Authenticator(context, self)
        authenticator.start()
        authenticator.configure_curve_callback(domain="*", credentials_provider=authenticator)
        self._authenticator = authenticator
        logger.info(
            "broker CURVE on: public key {}, {} allowed client key(s) in {}",
            self.public_key.decode(),
            len(self._allowed),
            self.allow_dir,
        )

    def stop(self) -> None:
        """Stop the ZAP thread (before the context terminates)."""
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE server with the broker's keys (before it binds)."""
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self._secret_key)

    def admits(self, host: str, key: bytes) -> bool:
        """True when the Z85 ``key`` is allow-listed; a denial is remembered for :meth:`denied_key`."""
        self._reload_if_changed()
        if key in self._allowed:
            return True
        with self._lock:
            self._denials[host] = key.decode(errors="replace")
            self._denials.move_to_end(host)
            while len(self._denials) > _REMEMBERED_DENIALS:
                self._denials.popitem(last=False)
        return False

    def identity(self, key: bytes) -> str:
        """The identity of the admitted Z85 ``key`` (the key itself if it has just been removed)."""
        return self._allowed.get(key) or key.decode(errors="replace")

    @property
    def identities(self) -> frozenset[str]:
        """The identities of the allow-listed keys now."""
        return frozenset(self._allowed.values())

    def denied_key(self, host: str | None) -> tuple[str, str] | None:
        """``(host, key)`` of the last ZAP denial for ``host`` (of any host if None), if any."""
        with self._lock:
            if host is None:
                return next(reversed(self._denials.items()), None)
            key = self._denials.get(host)
            return (host, key) if key is not None else None

    def _dir_mtime(self) -> int:
        try:
            return os.stat(self.allow_dir).st_mtime_ns
        except OSError:
            return -1

    def _reload_if_changed(self) -> None:
        mtime = self._dir_mtime()
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            allowed = load_identities(self.allow_dir)
        except BrokerConfigError as exc:
            logger.error("broker allow-list not reloaded, keeping the previous one: {}", exc)
            return
        logger.info("broker allow-list {} reloaded: {} client key(s)", self.allow_dir, len(allowed))
        self._allowed = allowed
