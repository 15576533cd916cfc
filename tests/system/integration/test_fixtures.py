"""The pytest fixtures tickbus gives its users work as documented."""

from __future__ import annotations

import asyncio

import actors


async def test_tickbus_hub_and_actor_fixtures_run_a_real_round_trip(tickbus_hub, tickbus_actors):
    echo = tickbus_actors("tests.system.integration.sample_actors:Echo", name="echo")
    assert echo.proc.poll() is None
    sub = actors.Subscriber(tickbus_hub, "test")
    sub.subscribe(("pong", "*"))
    await tickbus_hub.sync()
    await tickbus_hub.wait_for_subscribers(("ping", "a"))
    tickbus_hub.publish(actors.Key("ping", "a"), {"hello": 1})
    assert await asyncio.wait_for(sub.consume(), 10) == (("pong", "a"), {"hello": 1})


async def test_broker_statistics_arrive_on_the_reserved_key(tickbus_hub):
    sub = actors.Subscriber(tickbus_hub, "stats")
    sub.subscribe(("$broker", "stats"))
    key, payload = await asyncio.wait_for(sub.consume(), 10)
    assert key == ("$broker", "stats")
    assert payload["subscribers"] >= 1


def test_memory_hub_fixture_is_an_in_process_hub(memory_hub):
    got = []
    actors.Subscriber(memory_hub, "s").add_sync_listener(actors.Key("a"), lambda k, p: got.append(p))
    memory_hub.publish(actors.Key("a"), 1)
    assert got == [1]
