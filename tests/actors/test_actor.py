"""Actor lifecycle, handlers, timers and the failure policy on the in-process Hub."""

from __future__ import annotations

import asyncio
import time

from actors import Actor, Hub, Key, Subscriber, every, handler


class Doubler(Actor):
    name = "doubler"
    prefix = ("doubled",)

    async def on_start(self) -> None:
        self.started = True
        self.seen: list[int] = []

    @handler(("n", "*"))
    def on_number(self, key, payload):
        self.seen.append(payload)
        self.publish(key[1:], payload * 2)

    @handler(("n", "slow"))
    async def on_slow(self, key, payload):
        await asyncio.sleep(0)
        self.publish(("slow",), payload)

    async def on_stop(self) -> None:
        self.stopped_cleanly = True


async def test_handlers_receive_matching_messages_in_order_and_publish_under_prefix():
    hub = Hub()
    out = Subscriber(hub, "out")
    out.subscribe(("doubled", "*"))
    actor = Doubler(hub)
    await actor.start()
    for i in range(5):
        hub.publish(Key("n", "x"), i)
    results = [await asyncio.wait_for(out.consume(), 1) for _ in range(5)]
    assert [p for _, p in results] == [0, 2, 4, 6, 8]
    hub.publish(Key("n", "slow"), 7)
    got = {await asyncio.wait_for(out.consume(), 1) for _ in range(2)}
    assert got == {(("doubled", "slow"), 14), (("doubled", "slow"), 7)}
    await actor.stop()
    assert actor.stopped_cleanly and await actor.stopped == "stopped"
    assert actor.statistics().handled == 7


async def test_stop_drains_queued_messages_before_on_stop():
    hub = Hub()
    actor = Doubler(hub)
    await actor.start()
    for i in range(100):
        hub.publish(Key("n", "x"), i)
    await actor.stop(drain_timeout=5)
    assert actor.seen == list(range(100))


class Flaky(Actor):
    max_consecutive_failures = 3

    @handler(("in",))
    def on_in(self, key, payload):
        if payload == "bad":
            raise ValueError("bad input")
        self.publish(("ok",), payload)


async def test_handler_failure_is_counted_and_skipped_then_actor_stops_after_n_in_a_row():
    hub = Hub()
    out = Subscriber(hub, "out")
    out.subscribe(("ok",))
    actor = Flaky(hub)
    await actor.start()
    for payload in ["bad", "good", "bad", "bad"]:
        hub.publish(Key("in"), payload)
    assert await asyncio.wait_for(out.consume(), 1) == (("ok",), "good")
    assert actor.statistics().failures == 3
    assert not actor.stopped.done()
    hub.publish(Key("in"), "bad")
    reason = await asyncio.wait_for(actor.stopped, 2)
    assert "3 consecutive failures" in reason and "bad input" in reason
    assert not hub.has_subscribers(Key("in"))


class Ticker(Actor):
    @every(0.01)
    def tick(self):
        self.publish(("tick",), self.statistics().timer_runs)


async def test_timer_runs_periodically_until_stop():
    hub = Hub()
    out = Subscriber(hub, "out")
    out.subscribe(("tick",))
    actor = Ticker(hub)
    await actor.start()
    firsts = [(await asyncio.wait_for(out.consume(), 1))[1] for _ in range(3)]
    assert firsts == [0, 1, 2]
    await actor.stop()
    assert actor.statistics().running is False


async def test_handler_time_latency_and_per_prefix_counts_are_recorded_without_otel():
    hub = Hub()
    actor = Doubler(hub)
    await actor.start()
    for i in range(10):
        hub.publish(Key("n", "x"), i)
    assert actor.statistics().handled == 10 and actor.statistics().queued == 0  # handled inline
    assert 1 <= actor.handler_ns.count <= 10  # at most one per 50 us is timed: a burst is sampled
    spaced = actor.handler_ns.count
    for i in range(3):
        time.sleep(0.0002)  # noqa: ASYNC251 -- apart by more than the sampling interval
        hub.publish(Key("n", "x"), i)
    assert actor.handler_ns.count == spaced + 3  # at a low rate every message is timed
    await actor.stop()
    assert actor.messages_in == {"n": 13}
    assert actor.messages_out == {"doubled": 13}
    assert actor.latency_ns.count == 0  # in-process messages carry no envelope header
