"""The ``[broker]`` and ``[profiler]`` tables of tickbus's one TOML config format.

One file format serves every service (see :mod:`actors._config` for ``[group]`` and ``[[actor]]``)::

    # /etc/tickbus/broker.toml                  (read by `tickbus broker --config FILE`)
    [broker]
    frontend = ["tcp://0.0.0.0:5550", "ipc:///run/tickbus/frontend"]   # or one string
    backend = ["tcp://0.0.0.0:5551"]
    hwm = 100000                # messages queued per peer
    max_msg_size = 2097152      # bytes; -1 for no limit
    max_subscription = 4096     # bytes of one subscription; a longer one disconnects the subscriber
    heartbeat_ivl = 0.5         # seconds; 0 disables ZMTP heartbeats
    heartbeat_timeout = 2.0     # seconds
    stats_interval = 1.0        # seconds; 0 publishes no statistics
    lvc = ["price.*"]           # last-value cache for late joiners' snapshots ("*": every key)
    lvc_max_pending = 64        # snapshot requests waiting for their inbox at once; more are refused
    lvc_inbox_wait = 1.0        # seconds a request waits for its inbox's subscription
    lvc_request_rate = 10.0     # snapshot requests a second per requester (name@host) ...
    lvc_request_burst = 50      # ... after a burst of this many
    lvc_total_request_rate = 200.0   # snapshot requests a second from everyone together
    lvc_max_requesters = 10000  # requesters whose rate is tracked (least recent forgotten)
    lvc_send_hwm = 64           # reply parts queued towards the broker; stuck for 1 s: abandoned
    curve_secret = "/etc/tickbus/keys/broker.key_secret"   # CURVE: see `tickbus keys`
    allow_dir = "/etc/tickbus/keys/allowed"                 # public keys of admitted clients
    insecure = false            # true: serve other hosts without CURVE (trusted networks only)
    permissions = "/etc/tickbus/keys/permissions.toml"     # per-identity permissions (needs CURVE)
    max_subscriptions_per_identity = 10000   # with permissions: distinct prefixes per identity
    max_subscriptions_total = 100000         # with permissions: distinct prefixes in total
    metrics_port = 9464         # Prometheus on 127.0.0.1:PORT; 0: off

    # /etc/tickbus/profiler.toml                (read by `tickbus profiler --config FILE`)
    [profiler]
    frontend = "tcp://10.0.0.1:5550"   # a broker pair: a list (or "A,B"), one backend per frontend
    backend = "tcp://10.0.0.1:5551"
    window = 60.0               # seconds per stored window
    interval_us = 10000         # Austin's sampling interval (100 Hz)
    mode = "cpu"                # "cpu" or "wall"
    pids = []                   # extra processes to profile
    data_dir = "/var/lib/tickbus"
    alerts_file = "/var/lib/tickbus/alerts.jsonl"   # regression alerts, JSON lines (this is the default)
    webhook = "https://alerts.example/tickbus"      # also POST each alert here (default: none)
    scheduling = "idle"         # "idle": only CPU time the actors leave (SCHED_IDLE); "normal"

Every table may live in the same file; each command reads its own and ignores the others'.
Precedence: a command-line flag (one that differs from its default) beats an environment variable,
which beats the file, which beats the default. The environment variables are listed in
:data:`BROKER_KEYS` and :data:`PROFILER_KEYS` (``TICKBUS_BROKER_FRONTEND=a,b`` for lists).
A later option (CURVE keys, allow-lists) adds one line to a table here.
"""

from __future__ import annotations

import argparse
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ._errors import ConfigError

__all__ = [
    "BROKER_KEYS",
    "PROFILER_KEYS",
    "TABLES",
    "apply_service_config",
    "environment_values",
    "load_table",
    "read_toml",
]

TABLES = ("group", "hub", "actor", "broker", "profiler")
"""Every top-level table the TOML format knows; each command reads its own."""


def _endpoints(value: object, where: str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where} = {value!r} must be an endpoint or a non-empty list of endpoints")
    for item in items:
        if not isinstance(item, str) or not item.startswith(("tcp://", "ipc://")):
            raise ConfigError(f"{where} = {value!r}: {item!r} is not a tcp:// or ipc:// endpoint")
    return [str(i) for i in items]


def _broker_endpoints(value: object, where: str) -> str:
    """Where a client connects: one broker, or a pair as a list or a comma-separated string (each
    checked); returned comma-separated, as ``actors.connect`` and ``$TICKBUS_FRONTEND`` take it."""
    return ",".join(_endpoints(value, where))


def _integer(low: int, high: int | None = None, also: int | None = None) -> Callable[[object, str], int]:
    def check(value: object, where: str) -> int:
        number = value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value)
        if (
            type(number) is not int
            or (number < low and number != also)
            or (high is not None and number > high)
        ):
            allowed = f">= {low}" if high is None else f"in {low}..{high}"
            extra = f" (or {also})" if also is not None else ""
            raise ConfigError(f"{where} = {value!r} must be an integer {allowed}{extra}")
        return number

    return check


def _seconds(positive: bool) -> Callable[[object, str], float]:
    def check(value: object, where: str) -> float:
        try:
            number = float(value) if isinstance(value, int | float | str) and value is not True else None
        except ValueError:
            number = None
        if isinstance(value, bool) or number is None or not math.isfinite(number) or number < 0:
            raise ConfigError(f"{where} = {value!r} must be a number of seconds >= 0, e.g. 1.0")
        if positive and number == 0:
            raise ConfigError(f"{where} = {value!r} must be a number of seconds > 0")
        return number

    return check


def _rate(value: object, where: str) -> float:
    try:
        number = (
            float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
        )
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number < 0:
        raise ConfigError(f"{where} = {value!r} must be a number per second >= 0, e.g. 10.0")
    return number


def _choice(*allowed: str) -> Callable[[object, str], str]:
    def check(value: object, where: str) -> str:
        if value not in allowed:
            raise ConfigError(f"{where} = {value!r}; allowed: {', '.join(allowed)}")
        return str(value)

    return check


def _patterns(value: object, where: str) -> list[str]:
    items = [v for v in value.split(",") if v] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise ConfigError(f"{where} = {value!r} must be a list of dotted key patterns, e.g. ['price.*']")
    return [str(i) for i in items]


def _pids(value: object, where: str) -> list[int]:
    items = [v for v in value.split(",") if v] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(f"{where} = {value!r} must be a list of process ids")
    return [_integer(1)(item, where) for item in items]


def _file(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} = {value!r} must be a path")
    return value


def _path(value: object, where: str) -> Path:
    return Path(_file(value, where))


def _url(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(f"{where} = {value!r} must be an http:// or https:// URL")
    return value


def _boolean(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    raise ConfigError(f"{where} = {value!r} must be true or false")


class Key(NamedTuple):
    """One key of a table: its validator, the environment variable that overrides it, the CLI dest."""

    check: Callable[[object, str], Any]
    env: str | None
    dest: str


BROKER_KEYS: dict[str, Key] = {
    "frontend": Key(_endpoints, "TICKBUS_BROKER_FRONTEND", "frontend"),
    "backend": Key(_endpoints, "TICKBUS_BROKER_BACKEND", "backend"),
    "hwm": Key(_integer(0), "TICKBUS_BROKER_HWM", "hwm"),
    "max_msg_size": Key(_integer(1, also=-1), "TICKBUS_BROKER_MAX_MSG_SIZE", "max_msg_size"),
    "max_subscription": Key(_integer(1, 65536), "TICKBUS_BROKER_MAX_SUBSCRIPTION", "max_subscription"),
    "heartbeat_ivl": Key(_seconds(False), "TICKBUS_BROKER_HEARTBEAT_IVL", "heartbeat_ivl"),
    "heartbeat_timeout": Key(_seconds(False), "TICKBUS_BROKER_HEARTBEAT_TIMEOUT", "heartbeat_timeout"),
    "stats_interval": Key(_seconds(False), "TICKBUS_BROKER_STATS_INTERVAL", "stats_interval"),
    "lvc": Key(_patterns, "TICKBUS_BROKER_LVC", "lvc"),
    # the last-value cache's bounds on snapshot requests (broker._lvc_requests)
    "lvc_max_pending": Key(_integer(1), "TICKBUS_BROKER_LVC_MAX_PENDING", "lvc_max_pending"),
    "lvc_inbox_wait": Key(_seconds(False), "TICKBUS_BROKER_LVC_INBOX_WAIT", "lvc_inbox_wait"),
    "lvc_request_rate": Key(_rate, "TICKBUS_BROKER_LVC_REQUEST_RATE", "lvc_request_rate"),
    "lvc_request_burst": Key(_integer(1), "TICKBUS_BROKER_LVC_REQUEST_BURST", "lvc_request_burst"),
    "lvc_total_request_rate": Key(_rate, "TICKBUS_BROKER_LVC_TOTAL_REQUEST_RATE", "lvc_total_request_rate"),
    "lvc_max_requesters": Key(_integer(1), "TICKBUS_BROKER_LVC_MAX_REQUESTERS", "lvc_max_requesters"),
    "lvc_send_hwm": Key(_integer(1), "TICKBUS_BROKER_LVC_SEND_HWM", "lvc_send_hwm"),
    # CURVE (broker._auth): the broker's secret key file, the directory of admitted public keys
    "curve_secret": Key(_file, "TICKBUS_BROKER_CURVE_SECRET", "curve_secret"),
    "allow_dir": Key(_file, "TICKBUS_BROKER_ALLOW_DIR", "allow_dir"),
    "insecure": Key(_boolean, "TICKBUS_BROKER_INSECURE", "insecure"),
    # per-identity permissions (broker._permissions) and the subscription limits they enforce
    "permissions": Key(_file, "TICKBUS_BROKER_PERMISSIONS", "permissions"),
    "max_subscriptions_per_identity": Key(
        _integer(1), "TICKBUS_BROKER_MAX_SUBSCRIPTIONS_PER_IDENTITY", "max_subscriptions_per_identity"
    ),
    "max_subscriptions_total": Key(
        _integer(1), "TICKBUS_BROKER_MAX_SUBSCRIPTIONS_TOTAL", "max_subscriptions_total"
    ),
    "metrics_port": Key(_integer(0, 65535), None, "metrics_port"),  # $TICKBUS_METRICS_PORT: metrics
}
"""The ``[broker]`` table: key → validator, overriding environment variable, ``tickbus broker`` dest."""

PROFILER_KEYS: dict[str, Key] = {
    "frontend": Key(_broker_endpoints, "TICKBUS_FRONTEND", "frontend"),
    "backend": Key(_broker_endpoints, "TICKBUS_BACKEND", "backend"),
    "window": Key(_seconds(True), "TICKBUS_PROFILER_WINDOW", "window"),
    "interval_us": Key(_integer(1), "TICKBUS_PROFILER_INTERVAL_US", "interval_us"),
    "mode": Key(_choice("cpu", "wall"), "TICKBUS_PROFILER_MODE", "mode"),
    "pids": Key(_pids, "TICKBUS_PROFILER_PIDS", "pid"),
    "data_dir": Key(_path, "TICKBUS_DATA_DIR", "data_dir"),
    "alerts_file": Key(_path, "TICKBUS_PROFILER_ALERTS_FILE", "alerts_file"),
    "webhook": Key(_url, "TICKBUS_PROFILER_WEBHOOK", "webhook"),
    "scheduling": Key(_choice("idle", "normal"), "TICKBUS_PROFILER_SCHEDULING", "scheduling"),
}
"""The ``[profiler]`` table, as :data:`BROKER_KEYS` for ``tickbus profiler``."""

_SECTIONS = {"broker": BROKER_KEYS, "profiler": PROFILER_KEYS}


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a tickbus TOML file; :class:`ConfigError` names the file and what is wrong."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text: {exc}") from None
    unknown = sorted(set(data) - set(TABLES))
    if unknown:
        allowed = ", ".join(f"[{t}]" if t != "actor" else "[[actor]]" for t in TABLES)
        raise ConfigError(f"{source}: unknown table(s) {unknown}; allowed: {allowed}")
    return data


def load_table(path: str | Path, section: str) -> dict[str, Any]:
    """The validated ``[section]`` table of ``path`` (``broker`` or ``profiler``), keyed by CLI dest."""
    keys = _SECTIONS[section]
    source = str(path)
    table = read_toml(path).get(section)
    if table is None:
        raise ConfigError(f"{source}: no [{section}] table; `tickbus {section} --config` reads [{section}]")
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {section} must be a table [{section}]")
    bad = sorted(set(table) - set(keys))
    if bad:
        raise ConfigError(f"{source}: unknown key(s) {section}.{bad}; allowed: {sorted(keys)}")
    return {keys[k].dest: keys[k].check(v, f"{source}: {section}.{k}") for k, v in table.items()}


def environment_values(section: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``section`` values set by environment variables, validated, keyed by CLI dest."""
    env = os.environ if environ is None else environ
    values = {}
    for key in _SECTIONS[section].values():
        if key.env and env.get(key.env):
            values[key.dest] = key.check(env[key.env], f"environment: {key.env}")
    return values


def apply_service_config(
    args: argparse.Namespace,
    section: str,
    defaults: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> argparse.Namespace:
    """``args`` with the file's ``[section]`` (``args.config``) and the environment filled in.

    An option still at its parser default (``defaults``) takes the environment's value, else the
    file's; one given on the command line with another value wins over both.
    """
    merged: dict[str, Any] = {}
    config = getattr(args, "config", None)
    if config:
        merged.update(load_table(config, section))
    merged.update(environment_values(section, environ))
    result = argparse.Namespace(**vars(args))
    for dest, value in merged.items():
        if getattr(args, dest, None) == defaults.get(dest):
            setattr(result, dest, value)
    return result
