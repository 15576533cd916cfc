"""Running a group of actors in one process: load, connect, start, announce, drain on SIGTERM.

Reserved keys a group publishes on:

- ``('$actors', 'hello', <group>)`` at start and every ``announce_interval`` seconds: pid, host,
  group, actor names and classes, the application's ``version`` (:func:`app_version`) and
  ``tickbus`` (tickbus's version); the profiling collector and operators find actors here;
- ``('$actors', 'stats', <group>)`` every ``stats_interval`` seconds and once more on stop: the
  hub's and every actor's ``statistics()`` as dicts;
- ``('$actors', 'bye', <group>)`` after a clean stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import importlib
import os
import socket
import sys
from collections.abc import Callable

from loguru import logger

import observability
from broker import ACTORS, Key
from observability import ActorError, ConfigError, describe_exception, notify_service

from ._actor import Actor
from ._ask import ask_statistics
from ._config import GroupConfig
from ._connect import connect
from ._hub import Hub
from ._remote import RemoteHub

EXIT_OK = 0
EXIT_ACTOR_FAILED = 1


def version() -> str:
    """The installed tickbus version (``0+unknown`` from a bare checkout; looked up once)."""
    return observability.tickbus_version()


def app_version(config: GroupConfig) -> str:
    """The application's version, on profile windows and spans (``service.version``).

    ``version`` of the group config (or ``$TICKBUS_APP_VERSION``, applied by
    :meth:`GroupConfig.with_environment`), else the installed version of the distribution that
    provides the first actor's top-level package, else tickbus's version.
    """
    if config.version:
        return config.version
    for spec in config.actors:
        found = observability.module_version(spec.target.partition(":")[0])
        if found is not None:
            return found
    return version()


def load_actor_class(target: str) -> type[Actor]:
    """Import ``module:Class`` and check that it is an :class:`Actor` subclass.

    :class:`ActorError` names the module and what went wrong: not found, a syntax error, or any
    exception its top-level code raised (with the user's file and line)."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # SyntaxError, ImportError, and whatever the module's own code raises
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and exc.name == module_name.partition(".")[0]:
            hint = (
                f"; run from the directory that holds {exc.name}/, install it into this virtualenv "
                "(pip install -e .), or add its parent directory to PYTHONPATH"
            )
        raise ActorError(
            f"cannot import module {module_name!r} for actor {target!r}: {describe_exception(exc)}{hint}"
        ) from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise ActorError(f"module {module_name!r} has no attribute {attr!r} (actor {target!r})")
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise ActorError(f"{target!r} is not a subclass of actors.Actor")
    return cls


def _announcement(config: GroupConfig, actors: list[Actor], app: str) -> dict[str, object]:
    return {
        "group": config.name,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "actors": [a.name for a in actors],
        "classes": [f"{type(a).__module__}:{type(a).__qualname__}" for a in actors],
        "version": app,
        "tickbus": version(),
        "python": sys.version.split()[0],
    }


async def run_group(
    config: GroupConfig,
    *,
    hub: Hub | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[list[Actor]], None] | None = None,
    before_start: Callable[[], None] | None = None,
    announce_interval: float = 5.0,
    stats_interval: float = 1.0,
    connect_timeout: float = 10.0,
) -> int:
    """Run the actors of ``config`` until ``stop`` is set (or an actor fails, by policy).

    Returns the process exit code: 0 after a clean stop, 1 when an actor stopped itself and the
    policy is ``exit``. ``before_start`` runs once the hub is connected, before the first actor
    starts; ``on_ready`` once every actor has started and the hub's subscriptions are in place.
    """
    classes = [(load_actor_class(spec.target), spec) for spec in config.actors]
    app = app_version(config)  # reads installed metadata: not between the actors' first messages
    stop = stop or asyncio.Event()
    own_hub = hub is None
    if hub is None:
        try:
            hub = await connect(
                config.frontend, config.backend, name=config.name, wait=connect_timeout, **config.hub
            )
        except ValueError as exc:  # an option of [hub] the hub refused (a type or range the file checked)
            raise ConfigError(f"{config.source}: [hub]: {exc}") from None
    running: list[Actor] = []
    code = EXIT_OK
    announcer: asyncio.Task[None] | None = None
    try:
        observability.metrics.add_hub(hub)  # read by the metrics exporters, if enabled; never per message
        if before_start is not None:
            before_start()
        for cls, spec in classes:
            actor = cls(hub, name=spec.name, config=spec.config)
            try:
                await actor.start()
            except Exception as exc:  # the user's on_start: a startup failure, not a crash of tickbus
                raise ActorError(
                    f"actor {actor.name!r} ({spec.target}) failed to start: {describe_exception(exc)}"
                ) from exc
            running.append(actor)
            observability.metrics.add_actor(actor)
        if isinstance(hub, RemoteHub):
            await hub.sync()
        hello = _announcement(config, running, app)
        announcer = asyncio.get_running_loop().create_task(
            _announce(hub, config.name, hello, running, announce=announce_interval, stats=stats_interval)
        )
        logger.info(
            "group {} running actors {} (pid {})", config.name, [a.name for a in running], os.getpid()
        )
        if (real_time := observability.real_time_scheduling()) is not None:
            logger.info("group {} runs at {} (real-time scheduling)", config.name, real_time)
        if on_ready is not None:
            on_ready(running)
        code = await _wait_for_end(stop, running, config.on_actor_failure)
    finally:
        if announcer is not None:
            announcer.cancel()
            await asyncio.gather(announcer, return_exceptions=True)
        await asyncio.gather(*(a.stop(config.drain_timeout) for a in running), return_exceptions=True)
        if running:
            hub.publish(Key(ACTORS, "stats", config.name), group_statistics(config.name, hub, running))
            hub.publish(Key(ACTORS, "bye", config.name), {"group": config.name, "pid": os.getpid()})
        if observability.metrics.enabled:  # export the drained counters before forgetting the actors
            await asyncio.to_thread(observability.metrics.flush)
        observability.metrics.remove(hub, *running)
        if own_hub:
            await hub.close()
    return code


def group_statistics(group: str, hub: Hub, running: list[Actor]) -> dict[str, object]:
    """The payload of ``('$actors', 'stats', group)``: hub and actor statistics as plain dicts.

    ``timing`` maps each actor to its ``handler_ns`` (handler run time) and ``latency_ns`` (send to
    handler start) histograms since start, as ``[upper bound, count]`` of the non-empty buckets: a
    reader (``tickbus top``) takes percentiles of the difference between two reports.
    """
    return {
        "group": group,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "hub": dataclasses.asdict(hub.statistics()),
        "ask": dataclasses.asdict(ask_statistics(hub)),  # request/reply counters of the hub (actors._ask)
        "actors": {a.name: dataclasses.asdict(a.statistics()) for a in running},
        "timing": {
            a.name: {"handler_ns": a.handler_ns.bucket_bounds(), "latency_ns": a.latency_ns.bucket_bounds()}
            for a in running
        },
    }


async def _announce(
    hub: Hub, group: str, hello: dict[str, object], running: list[Actor], *, announce: float, stats: float
) -> None:
    hello_key = Key(ACTORS, "hello", group)
    stats_key = Key(ACTORS, "stats", group)
    loop = asyncio.get_running_loop()
    next_hello = loop.time()
    while True:
        if loop.time() >= next_hello:
            hub.publish(hello_key, hello)
            next_hello += announce
        hub.publish(stats_key, group_statistics(group, hub, running))
        await asyncio.sleep(stats)


async def _wait_for_end(stop: asyncio.Event, running: list[Actor], policy: str) -> int:
    stop_task = asyncio.ensure_future(stop.wait())
    pending_actors: set[asyncio.Future[str]] = {a.stopped for a in running}
    try:
        while True:
            waiting: set[asyncio.Future[object]] = {stop_task, *pending_actors}  # type: ignore[arg-type]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if stop_task in done:
                return EXIT_OK
            for fut in done:
                pending_actors.discard(fut)
                logger.error("an actor stopped by itself: {}", fut.result())
            if policy == "exit":
                return EXIT_ACTOR_FAILED
            if not pending_actors:
                logger.error("every actor of the group has stopped; exiting")
                return EXIT_ACTOR_FAILED
    finally:
        stop_task.cancel()


def serve_group(
    config: GroupConfig, *, ready_line: bool = True, metrics_port: int | None = None, environment: bool = True
) -> int:
    """Run a group in a fresh event loop with SIGTERM/SIGINT handled; return the exit code.

    ``environment``: apply the ``TICKBUS_*`` variables over ``config``
    (:meth:`GroupConfig.with_environment`); False when the caller did, under its own overrides
    (``tickbus run``: flags over the environment over the file).

    Metrics are exported while it runs (see :mod:`observability._metrics`): OTLP JSON lines under the
    data directory or to ``$OTEL_EXPORTER_OTLP_ENDPOINT``, and a Prometheus endpoint on
    ``metrics_port`` (default ``$TICKBUS_METRICS_PORT``; 0: none). Loop lag and slow callbacks are probed.
    Sampled messages are traced (see :mod:`observability._tracing`), spans flushed on the way out.
    """
    if environment:
        config = config.with_environment()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # under a Type=notify unit (no-ops elsewhere): WATCHDOG=1 from this loop, so a blocked loop
        # stops feeding it; SIGTERM/SIGINT send STOPPING=1 and start the drain
        notifier, feeder = notify_service(loop, stop, f"group {config.name} draining")

        def settle() -> None:
            # Everything alive now (modules, classes, config, the hub) lives as long as the process:
            # freeze it out of the collector's sight. Measured: a full collection of a started group
            # then costs 0.1 ms instead of 7.6 ms (2 busy cores), and gen-2 collections are the latency
            # spikes. Before the actors start: the full collection itself (10-30 ms) would stall
            # their first messages and timers (a feed started just before it sent its first ~90
            # ticks as one burst, each 1-2.5 ms late at the strategy).
            gc.collect()
            gc.freeze()

        def ready(running: list[Actor]) -> None:
            # watched from here on: the loading, connecting and collecting above are tickbus's own
            # one-off startup, and a warning about them would be nothing an operator can act on
            observability.slow_callbacks.enable()
            notifier.ready(f"group {config.name} running actors {','.join(a.name for a in running)}")
            if ready_line:  # one write (print() writes the newline apart: the log's writer thread can
                # land between them), from a thread: a stalled journal must not stop this loop
                observability.announce(
                    f"tickbus run ready group={config.name} actors={','.join(a.name for a in running)}"
                )

        observability.loop_lag.enable()
        try:
            return await run_group(config, stop=stop, on_ready=ready, before_start=settle)
        finally:
            feeder.cancel()
            notifier.close()
            observability.slow_callbacks.disable()
            observability.loop_lag.disable()

    for spec in config.actors:  # imported before the loop runs: an import is no slow callback
        load_actor_class(spec.target)  # and a module that cannot load fails before anything starts
    observability.metrics.enable(config.name, prometheus_port=metrics_port)
    try:
        # OTEL_* variables apply; by default 1% of origins, to <data dir>/traces (observability._tracing)
        observability.enable_tracing(
            config.name,
            actors=[a.name or a.target for a in config.actors],
            version=app_version(config),
        )
        return asyncio.run(main())
    finally:
        observability.disable_tracing()  # exports the spans of the drained messages
        observability.metrics.disable()
