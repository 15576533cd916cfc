"""The aiopubsub-compatible API on the in-process Hub, without sockets."""

from __future__ import annotations

import asyncio

import pytest

from actors import ConsumeQueueNotFoundError, Hub, Key, Publisher, Subscriber


async def test_subscriber_consumes_what_matches_its_patterns_in_publish_order():
    hub = Hub()
    sub = Subscriber(hub, "s")
    sub.subscribe(Key("some", "*"))
    pub = Publisher(hub, ("some",))
    other = Publisher(hub, ("other",))
    for i in range(3):
        pub.publish(("namespace",), {"data": i})
        other.publish(("namespace",), {"data": -1})
    got = [await asyncio.wait_for(sub.consume(), 1) for _ in range(3)]
    assert got == [(("some", "namespace"), {"data": i}) for i in range(3)]
    assert sub.queue_size() == 0


async def test_sync_and_async_listeners_receive_and_can_be_removed():
    hub = Hub()
    sub = Subscriber(hub, "s")
    seen_sync: list[tuple] = []
    seen_async: list[tuple] = []
    done = asyncio.Event()

    async def on_async(key, payload):
        seen_async.append((key, payload))
        done.set()

    sub.add_sync_listener(Key("a", "*"), lambda k, p: seen_sync.append((k, p)))
    sub.add_async_listener({Key("a", "b"), Key("c")}, on_async)
    hub.publish(Key("a", "b"), 1)
    await asyncio.wait_for(done.wait(), 1)
    assert seen_sync == [(("a", "b"), 1)] and seen_async == [(("a", "b"), 1)]
    await sub.remove_all_listeners()
    hub.publish(Key("a", "b"), 2)
    assert not hub.has_subscribers()
    assert seen_sync == [(("a", "b"), 1)]


async def test_listener_exception_is_counted_not_raised_into_the_publisher():
    hub = Hub()
    sub = Subscriber(hub, "s")
    good: list[int] = []

    def broken(key, payload):
        raise RuntimeError("boom")

    sub.add_sync_listener(Key("k"), broken)
    sub.add_sync_listener(Key("k"), lambda k, p: good.append(p))
    hub.publish(Key("k"), 1)
    assert good == [1]
    assert hub.statistics().listener_errors == 1


async def test_consume_on_an_unknown_subscription_names_it():
    sub = Subscriber(Hub(), "s")
    with pytest.raises(ConsumeQueueNotFoundError, match="no queue 'nope'"):
        await sub.consume("nope")


async def test_slow_consumer_overflow_drops_oldest_and_never_blocks_the_publisher():
    hub = Hub()
    sub = Subscriber(hub, "slow", queue_size=10)
    sub.subscribe(("t",))
    for i in range(25):
        hub.publish(Key("t"), i)
    assert sub.statistics().dropped == 15
    assert (await sub.consume())[1] == 15


def test_has_subscribers_sees_patterns_and_publisher_prefixes():
    hub = Hub()
    pub = Publisher(hub, ("quote",))
    assert not pub.has_subscribers()
    sub = Subscriber(hub, "s")
    sub.sync_subscribe(("quote", "*"), lambda k, p: None)
    assert pub.has_subscribers()
    assert pub.has_subscribers(("AAPL",))
    assert not hub.has_subscribers(Key("trade", "AAPL"))


async def test_multiple_subscription_ids_have_separate_queues():
    hub = Hub()
    sub = Subscriber(hub, "s")
    sub.subscribe(("a",), "first")
    sub.subscribe(("b",), "second")
    hub.publish(Key("b"), "to-second")
    hub.publish(Key("a"), "to-first")
    assert await sub.consume("first") == (("a",), "to-first")
    assert await sub.consume("second") == (("b",), "to-second")
    sub.unsubscribe(("a",), "first")
    hub.publish(Key("a"), "gone")
    assert sub.queue_size("first") == 0
