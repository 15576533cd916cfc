"""Configuration of an actor group: one TOML format, validated with errors that say where and what.

::

    # pipeline.toml
    [group]
    name = "pipeline"                  # process name, used in logs and publisher ids
    frontend = "tcp://10.0.0.1:5550"   # optional; else $TICKBUS_FRONTEND, else tcp://127.0.0.1:5550
    backend = "tcp://10.0.0.1:5551"    # optional; else $TICKBUS_BACKEND, else tcp://127.0.0.1:5551
                                       # a broker pair: lists, one backend per frontend, e.g.
                                       # frontend = ["tcp://10.0.0.1:5550", "tcp://10.0.0.2:5550"]
    drain_timeout = 5.0                # seconds SIGTERM waits for queued messages
    on_actor_failure = "exit"          # "exit": the process exits 1 when an actor stops itself
                                       # "continue": the other actors keep running
    version = "1.3.0"                  # optional; the application's version on profiles and spans
                                       # (default: the installed version of the actors' package)

    [hub]                              # optional; actors.connect's options (see its docstring)
    max_lag = 1.0                      # seconds behind before it discards what waited; inf: never
    slow_after = 1.0                   # seconds behind before it flags itself slow; 0: never
    hwm = 100000                       # messages each ZeroMQ queue holds

    [[actor]]
    class = "examples.pipeline:Model"  # module:Class, a subclass of actors.Actor
    name = "model"                     # optional; default: the class's name attribute
    [actor.config]                     # optional; given to the actor as self.config
    symbols = ["AAPL", "MSFT"]

Environment variables override the file: ``TICKBUS_FRONTEND``, ``TICKBUS_BACKEND``,
``TICKBUS_GROUP_NAME``, ``TICKBUS_DRAIN_TIMEOUT``, ``TICKBUS_APP_VERSION`` (endpoint lists
comma-separated).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from observability import ConfigError, read_toml

_GROUP_KEYS = {"name", "frontend", "backend", "drain_timeout", "on_actor_failure", "version"}
_ACTOR_KEYS = {"class", "name", "config"}
# [hub]: the options of actors.connect a group's file may set, by kind of value
_HUB_COUNTS = (  # whole numbers > 0
    "hwm",
    "max_payload",
    "max_key",
    "max_remote_subscriptions",
    "max_streams",
    "max_pending_asks",
    "max_snapshot_entries",
)
_HUB_SECONDS = ("heartbeat_ivl", "heartbeat_timeout", "max_clock_skew", "max_message_age", "reorder_window")
_HUB_SECONDS_OR_OFF = ("idle_heartbeat", "slow_after", "linger")  # 0: off (linger: do not wait)
_HUB_KEYS = {*_HUB_COUNTS, *_HUB_SECONDS, *_HUB_SECONDS_OR_OFF, "max_lag"}
_FAILURE_POLICIES = ("exit", "continue")


@dataclass(frozen=True)
class ActorSpec:
    """One actor to run: ``target`` is ``module:Class``."""

    target: str
    name: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupConfig:
    """Everything ``tickbus run`` needs to run a group of actors in one process."""

    actors: tuple[ActorSpec, ...]
    name: str = "actors"
    frontend: str | None = None
    backend: str | None = None
    drain_timeout: float = 5.0
    on_actor_failure: str = "exit"
    source: str = "<flags>"
    version: str | None = None  # the application's version; None: see actors.app_version()
    hub: Mapping[str, Any] = field(default_factory=dict)  # actors.connect's options ([hub])

    def with_environment(self, environ: Mapping[str, str] | None = None) -> GroupConfig:
        """This config with the ``TICKBUS_*`` environment overrides applied (validated)."""
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for var, attr in (
            ("TICKBUS_FRONTEND", "frontend"),
            ("TICKBUS_BACKEND", "backend"),
            ("TICKBUS_GROUP_NAME", "name"),
            ("TICKBUS_APP_VERSION", "version"),
        ):
            if env.get(var):
                changes[attr] = env[var]
        if env.get("TICKBUS_DRAIN_TIMEOUT"):
            changes["drain_timeout"] = _positive_float(
                env["TICKBUS_DRAIN_TIMEOUT"], "environment", "TICKBUS_DRAIN_TIMEOUT"
            )
        return _replace(self, changes)


def _replace(config: GroupConfig, changes: Mapping[str, Any]) -> GroupConfig:
    values = {f: getattr(config, f) for f in config.__dataclass_fields__}
    values.update(changes)
    return GroupConfig(**values)


def _positive_float(value: object, source: str, key: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key} = {value!r} is not a number; give seconds, e.g. 5.0") from None
    if number <= 0:
        raise ConfigError(f"{source}: {key} = {value!r} must be positive")
    return number


def _hub_options(table: object, source: str) -> dict[str, Any]:
    """The ``[hub]`` table, checked: each key one of :data:`_HUB_KEYS`, each value of its kind."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: hub must be a table [hub]")
    bad = set(table) - _HUB_KEYS
    if bad:
        raise ConfigError(f"{source}: unknown key(s) hub.{sorted(bad)}; allowed: {sorted(_HUB_KEYS)}")
    options: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{source}: hub.{key} = {value!r}"
        if key in _HUB_COUNTS:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{where} must be a whole number > 0")
        elif isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ConfigError(f"{where} is not a number; give seconds, e.g. 1.0")
        elif key == "max_lag":
            if value <= 0:
                raise ConfigError(f"{where} must be > 0 (inf: never discard)")
        elif not math.isfinite(value) or value < 0 or (value == 0 and key in _HUB_SECONDS):
            limit = ">= 0 (0: off)" if key in _HUB_SECONDS_OR_OFF else "> 0"
            raise ConfigError(f"{where} must be finite and {limit}")
        options[key] = float(value) if key not in _HUB_COUNTS else value
    return options


def _string(value: object, source: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: {key} = {value!r} must be a non-empty string")
    return value


def _check_target(target: str, source: str, key: str) -> str:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(
            f"{source}: {key} = {target!r} is not 'module:Class', e.g. 'examples.pipeline:Model'"
        )
    return target


def load_group_config(path: str | Path) -> GroupConfig:
    """Read and validate a group TOML file; :class:`ConfigError` names the file, key and allowed values."""
    source = str(path)
    data = read_toml(path)  # [broker] and [profiler] may share the file (observability._config)
    group = data.get("group", {})
    if not isinstance(group, dict):
        raise ConfigError(f"{source}: group must be a table [group]")
    bad = set(group) - _GROUP_KEYS
    if bad:
        raise ConfigError(f"{source}: unknown key(s) group.{sorted(bad)}; allowed: {sorted(_GROUP_KEYS)}")
    values: dict[str, Any] = {"source": source}
    for key in ("name", "frontend", "backend", "version"):
        if key in group:
            value = group[key]
            if key in ("frontend", "backend") and isinstance(value, list) and value:
                value = ",".join(_string(v, source, f"group.{key}[]") for v in value)
            values[key] = _string(value, source, f"group.{key}")
    if "drain_timeout" in group:
        values["drain_timeout"] = _positive_float(group["drain_timeout"], source, "group.drain_timeout")
    if "on_actor_failure" in group:
        policy = group["on_actor_failure"]
        if policy not in _FAILURE_POLICIES:
            raise ConfigError(
                f"{source}: group.on_actor_failure = {policy!r}; allowed: {', '.join(_FAILURE_POLICIES)}"
            )
        values["on_actor_failure"] = policy
    if "hub" in data:
        values["hub"] = _hub_options(data["hub"], source)
    entries = data.get("actor", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"{source}: no actors; add at least one [[actor]] table with class = 'module:Class'"
        )
    specs = []
    for i, entry in enumerate(entries):
        where = f"actor[{i}]"
        bad = set(entry) - _ACTOR_KEYS
        if bad:
            raise ConfigError(
                f"{source}: unknown key(s) {where}.{sorted(bad)}; allowed: {sorted(_ACTOR_KEYS)}"
            )
        if "class" not in entry:
            raise ConfigError(f"{source}: {where}.class is missing; give 'module:Class'")
        target = _check_target(_string(entry["class"], source, f"{where}.class"), source, f"{where}.class")
        name = _string(entry["name"], source, f"{where}.name") if "name" in entry else None
        config = entry.get("config", {})
        if not isinstance(config, dict):
            raise ConfigError(f"{source}: {where}.config must be a table")
        specs.append(ActorSpec(target, name, config))
    names = [s.name for s in specs if s.name]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: actor name(s) {dupes} used more than once; names must be unique")
    return GroupConfig(actors=tuple(specs), **values)


def group_from_flags(
    targets: list[str],
    *,
    name: str | None,
    frontend: str | None,
    backend: str | None,
    drain_timeout: float | None,
) -> GroupConfig:
    """A :class:`GroupConfig` from command-line flags (validated like the file)."""
    if not targets:
        raise ConfigError("tickbus run: give at least one module:Class or --config FILE")
    specs = tuple(ActorSpec(_check_target(t, "command line", "TARGET")) for t in targets)
    values: dict[str, Any] = {"actors": specs}
    if name:
        values["name"] = name
    if frontend:
        values["frontend"] = frontend
    if backend:
        values["backend"] = backend
    if drain_timeout is not None:
        values["drain_timeout"] = _positive_float(drain_timeout, "command line", "--drain-timeout")
    return GroupConfig(**values)
