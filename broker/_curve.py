"""CURVE keys: pyzmq certificate files, made by ``tickbus keys`` and loaded by hubs and the broker.

A key pair is two files written by :func:`zmq.auth.create_certificates`: ``NAME.key`` holds the
public key (safe to copy to other hosts, e.g. into the broker's allow-list directory) and
``NAME.key_secret`` both keys (readable by its owner only). The broker serves with its secret file
and admits the clients whose public files are in its allow-list directory (``broker._auth``); a
client needs the broker's public file and its own secret file:

- :func:`connect` takes ``curve=ClientCurve.from_files(server_public, client_secret)``;
- or, with no ``curve`` argument, ``$TICKBUS_CURVE_SERVERKEY`` (the broker's ``.key`` file) and
  ``$TICKBUS_CURVE_SECRET`` (this client's ``.key_secret`` file), so ``tickbus run``, the profiler
  and systemd units (an ``EnvironmentFile``) get CURVE without a flag.

Every failure to read a key is a :class:`ConfigError` naming the file, what is wrong and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from observability import ConfigError

ENV_SERVER_KEY = "TICKBUS_CURVE_SERVERKEY"
"""Environment variable: path of the broker's public certificate file (``NAME.key``)."""
ENV_SECRET = "TICKBUS_CURVE_SECRET"
"""Environment variable: path of this client's secret certificate file (``NAME.key_secret``)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def generate_keys(name: str, directory: str | Path) -> tuple[Path, Path]:
    """Write a new key pair ``DIR/NAME.key`` and ``DIR/NAME.key_secret``; return both paths.

    The directory is created (mode 0700) when missing; the secret file is made readable by its owner
    only. An existing pair is never overwritten (:class:`ConfigError`): remove it first.
    """
    if not _NAME.match(name):
        raise ConfigError(
            f"key name {name!r} is not allowed; use letters, digits, '_', '.' or '-' (at most 64), "
            "e.g. 'broker' or 'host-b.feed'"
        )
    folder = Path(directory)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise ConfigError(f"key file {path} already exists; remove it or pick another name")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        old_umask = os.umask(0o077)  # the secret file is never readable by others, not even briefly
        try:
            made_public, made_secret = zmq.auth.create_certificates(folder, name)
        finally:
            os.umask(old_umask)
        os.chmod(made_public, 0o644)  # the public half is meant to be copied around
    except OSError as exc:
        raise ConfigError(f"cannot write keys into {folder}: {exc.strerror}; check the directory") from exc
    return Path(made_public), Path(made_secret)


def _load(path: str | Path, what: str) -> tuple[bytes, bytes | None]:
    if not os.path.exists(path):  # pyzmq says only "Invalid certificate file"
        raise ConfigError(f"{what} {path}: no such file; create keys with `tickbus keys generate`")
    try:
        return zmq.auth.load_certificate(path)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot be read: {exc.strerror or exc}") from exc
    except (ValueError, IndexError) as exc:  # pyzmq: no public-key line, or a malformed one
        raise ConfigError(
            f"{what} {path} is not a pyzmq certificate file ({exc}); use one made by `tickbus keys generate`"
        ) from exc


def load_public_key(path: str | Path, what: str = "public key file") -> bytes:
    """The Z85 public key in the certificate file ``path`` (a ``.key`` or ``.key_secret`` file)."""
    return _load(path, what)[0]


def load_key_pair(path: str | Path, what: str = "secret key file") -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys from the secret certificate file ``path`` (``NAME.key_secret``)."""
    public, secret = _load(path, what)
    if not secret:
        raise ConfigError(f"{what} {path} holds no secret key; give the NAME.key_secret file, not NAME.key")
    return public, secret


@dataclass(frozen=True, slots=True)
class ClientCurve:
    """The keys a client socket needs to talk CURVE to a broker (all Z85-encoded)."""

    server_key: bytes
    """The broker's public key."""
    public_key: bytes
    """This client's public key (the one on the broker's allow-list)."""
    secret_key: bytes
    """This client's secret key."""

    @classmethod
    def from_files(cls, server_key_file: str | Path, secret_file: str | Path) -> ClientCurve:
        """Keys from the broker's public certificate file and this client's secret one."""
        server = load_public_key(server_key_file, "broker public key file")
        public, secret = load_key_pair(secret_file, "client secret key file")
        return cls(server, public, secret)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientCurve | None:
        """Keys from the files ``$TICKBUS_CURVE_SERVERKEY`` and ``$TICKBUS_CURVE_SECRET`` name; None
        when neither is set."""
        env = os.environ if environ is None else environ
        server, secret = env.get(ENV_SERVER_KEY, ""), env.get(ENV_SECRET, "")
        if not server and not secret:
            return None
        if not server or not secret:
            missing = ENV_SECRET if server else ENV_SERVER_KEY
            raise ConfigError(
                f"CURVE needs both {ENV_SERVER_KEY} (the broker's .key file) and {ENV_SECRET} "
                f"(this client's .key_secret file); {missing} is not set"
            )
        return cls.from_files(server, secret)

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make ``sock`` a CURVE client of the broker (before it connects)."""
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret_key)
