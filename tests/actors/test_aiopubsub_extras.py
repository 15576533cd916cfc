"""aiopubsub parity: queue sizes on the hub, Loop, ThrottledPublisher, MockHub (issue 13, item 7)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import actors
from actors import Hub, Key, Loop, MockHub, Publisher, Subscriber, ThrottledPublisher


def test_queue_sizes_count_each_queue_whose_pattern_matches_the_key():
    hub = Hub()
    first, second, listener = Subscriber(hub, "first"), Subscriber(hub, "second"), Subscriber(hub, "sync")
    first.subscribe(("a", "*"))
    second.subscribe(("a", "b"))
    second.subscribe(("c",), "other")
    listener.add_sync_listener(Key("a", "*"), lambda key, payload: None)  # no queue: not counted
    hub.publish(("a", "b"), 1)
    hub.publish(("a", "b"), 2)
    hub.publish(("a", "x"), 3)

    assert sorted(hub.get_subscriber_queue_sizes(("a", "b"))) == [2, 3]
    assert hub.get_subscriber_queue_sizes(("a", "x")) == (3,)
    assert hub.get_subscriber_queue_sizes(("z",)) == ()
    assert hub.get_all_subscriber_queue_sizes() == {Key("a", "*"): (3,), Key("a", "b"): (2,), Key("c"): (0,)}


async def test_queue_sizes_follow_consume_and_unsubscribe():
    hub = Hub()
    sub = Subscriber(hub, "s")
    sub.subscribe(("a",))
    hub.publish(("a",), 1)
    assert hub.get_subscriber_queue_sizes(("a",)) == (1,)
    await sub.consume()
    assert hub.get_subscriber_queue_sizes(("a",)) == (0,)
    sub.unsubscribe(("a",))
    assert hub.get_subscriber_queue_sizes(("a",)) == ()
    assert hub.get_all_subscriber_queue_sizes() == {}


def test_queue_sizes_refuse_a_pattern_as_the_key():
    with pytest.raises(actors.InvalidKeyError, match="concrete key"):
        Hub().get_subscriber_queue_sizes(("a", "*"))


async def test_loop_runs_the_coroutine_until_stopped_and_can_restart():
    runs: list[int] = []
    third = asyncio.Event()

    async def work() -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            third.set()

    loop = Loop(work, delay=0)
    loop.start()
    loop.start()  # already running: no second task
    assert loop.is_running
    await asyncio.wait_for(third.wait(), 5)
    await loop.stop_wait()
    assert not loop.is_running
    stopped_at = len(runs)
    await asyncio.sleep(0)
    assert len(runs) == stopped_at

    third.clear()
    runs.clear()
    loop.start()
    await asyncio.wait_for(third.wait(), 5)
    await loop.stop_wait()


async def test_loop_stop_cancels_the_run_in_progress():
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = Loop(forever, delay=None)
    loop.start()
    await asyncio.wait_for(started.wait(), 5)
    await loop.stop_wait()
    assert cancelled.is_set()
    assert loop.exception is None


async def test_loop_stops_and_keeps_the_exception_when_the_coroutine_raises():
    failing = asyncio.Event()

    async def broken() -> None:
        failing.set()
        raise ValueError("boom")

    loop = Loop(broken, delay=0)
    loop.start()
    await asyncio.wait_for(failing.wait(), 5)  # the raise and the loop's handling of it ran in that step
    assert isinstance(loop.exception, ValueError)
    assert not loop.is_running


async def test_throttled_publisher_waits_until_the_queue_drains_to_max_qsize():
    hub = Hub()
    publisher = Publisher(hub, ("feed",))
    sub = Subscriber(hub, "slow")
    sub.subscribe(("feed", "*"))
    throttled = ThrottledPublisher(hub, publisher, 2, lambda: itertools.repeat(0))

    for i in range(2):  # up to max_qsize queued: publish returns at once
        await asyncio.wait_for(throttled.publish(("x",), i), 5)
    pending = asyncio.create_task(throttled.publish(("x",), 2))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not pending.done()  # 3 queued > max_qsize 2
    assert await sub.consume() == (Key("feed", "x"), 0)
    await asyncio.wait_for(pending, 5)
    assert hub.get_subscriber_queue_sizes(("feed", "x")) == (2,)


async def test_throttled_publisher_returns_when_a_finite_delay_sequence_runs_out():
    hub = MockHub()  # every published message counts as waiting
    throttled = ThrottledPublisher(hub, Publisher(hub, ("p",)), 0, lambda: [0, 0, 0])
    await asyncio.wait_for(throttled.publish(("k",), "m"), 5)
    assert hub.published == [(Key("p", "k"), "m")]


def test_mock_hub_records_publications_and_subscribers_and_delivers_nothing():
    hub = MockHub()
    sub = Subscriber(hub, "s")
    sub.subscribe(("a", "*"))
    Publisher(hub, ("a",)).publish(("b",), {"x": 1})
    hub.publish(("a", "b"), 2)

    assert hub.published == [(Key("a", "b"), {"x": 1}), (Key("a", "b"), 2)]
    assert hub.published_by_key[Key("a", "b")] == [{"x": 1}, 2]
    assert hub.has_subscribers(("a", "b")) and not hub.has_subscribers(("c",))
    assert len(hub.subscribers[Key("a", "*")]) == 1
    assert hub.get_subscriber_queue_sizes(("a", "b")) == (2,)
    assert sub.queue_size() == 0
    sub.unsubscribe(("a", "*"))
    assert hub.subscribers[Key("a", "*")] == [] and not hub.has_subscribers(("a", "b"))
