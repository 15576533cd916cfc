"""``actors.run_group``'s start-up hooks, on an in-process hub: ``before_start`` runs before any
actor's ``on_start`` (``tickbus run`` collects and freezes the heap there, so the full collection
does not stall the actors' first messages), ``on_ready`` once every actor runs."""

from __future__ import annotations

import asyncio
from typing import Any

import actors
from actors import Actor, Hub

EVENTS: list[str] = []


class First(Actor):
    async def on_start(self) -> None:
        EVENTS.append("first started")


class Second(Actor):
    async def on_start(self) -> None:
        EVENTS.append("second started")


async def test_before_start_runs_before_the_first_actor_starts_and_on_ready_after_the_last() -> None:
    EVENTS.clear()
    targets = [f"{__name__}:First", f"{__name__}:Second"]
    config = actors.group_from_flags(targets, name="g", frontend=None, backend=None, drain_timeout=1.0)
    stop = asyncio.Event()
    ready = asyncio.Event()

    def on_ready(running: list[Actor]) -> None:
        EVENTS.append(f"ready with {len(running)}")
        ready.set()

    task = asyncio.get_running_loop().create_task(
        actors.run_group(
            config,
            hub=Hub(name="g"),
            stop=stop,
            on_ready=on_ready,
            before_start=lambda: EVENTS.append("before start"),
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    assert EVENTS == ["before start", "first started", "second started", "ready with 2"]


async def test_the_installed_metadata_is_read_before_the_actors_start(monkeypatch) -> None:
    # Reading every installed distribution's metadata for the app version took 40-50 ms of the loop;
    # done for the group's hello after the actors had started, it stalled a feed's first ticks.
    import observability

    EVENTS.clear()
    found = observability.module_version

    def module_version(module: str) -> str | None:
        EVENTS.append("metadata read")
        return found(module)

    monkeypatch.setattr(observability, "module_version", module_version)
    config = actors.group_from_flags(
        [f"{__name__}:First"], name="g", frontend=None, backend=None, drain_timeout=1.0
    )
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        actors.run_group(config, hub=Hub(name="g"), stop=stop, on_ready=lambda running: ready.set())
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    assert EVENTS == ["metadata read", "first started"]


async def test_the_group_file_s_hub_table_reaches_the_hub(tmp_path) -> None:
    # `tickbus run --config` used to connect with connect()'s defaults whatever the file said: a
    # recorder could not keep every queued message (max_lag = inf), nor a group set its heartbeats
    import math

    from actors.testing import BrokerProcess, eventually

    with BrokerProcess.start() as broker:
        path = tmp_path / "group.toml"
        path.write_text(
            f'[group]\nname = "g"\nfrontend = "{broker.frontend}"\nbackend = "{broker.backend}"\n'
            "[hub]\nmax_lag = inf\nhwm = 2000\nheartbeat_timeout = 3.0\n"
            f'[[actor]]\nclass = "{__name__}:First"\n'
        )
        config = actors.load_group_config(path)
        stop = asyncio.Event()
        hubs: list[Any] = []

        def on_ready(running: list[Actor]) -> None:
            hubs.append(running[0].hub)

        task = asyncio.get_running_loop().create_task(actors.run_group(config, stop=stop, on_ready=on_ready))
        try:
            await eventually(lambda: bool(hubs) or task.done(), what="the group running")
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) == 0
    hub = hubs[0]
    assert hub._max_lag == math.inf
    assert hub._sub_options[:3] == (2000, 0.5, 3.0)
