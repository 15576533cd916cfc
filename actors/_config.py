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

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from observability import ConfigError, read_toml

_GROUP_KEYS = {"name", "frontend", "backend", "drain_timeout", "on_actor_failure", "version"}
_ACTOR_KEYS = {"class", "name", "config"}
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
