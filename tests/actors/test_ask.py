"""Request/reply (``ask`` / ``@answers``) on the in-process hub, and its socket-free protocol."""

from __future__ import annotations

import asyncio
import gc
import random
import weakref
from typing import Any

import pytest

import actors
from actors import (
    Actor,
    AnswerError,
    AskTimeoutError,
    Hub,
    InvalidKeyError,
    Key,
    NoAnswererError,
    Subscriber,
    answers,
    ask,
    ask_statistics,
    handler,
)
from actors._labels import handler_running_in
from actors._request import PendingTable, parse_reply, parse_request
from actors.testing import eventually


class Risk(Actor):
    """Answers ``('risk', 'check')`` synchronously and ``('risk', 'slow')`` after ``delay`` seconds."""

    name = "risk"

    async def on_start(self) -> None:
        self.delay = 0.0
        self.calls: list[Any] = []
        self.release = asyncio.Event()
        self.release.set()

    @answers(("risk", "check"))
    def check(self, key: Key, order: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(order)
        if order["qty"] < 0:
            raise ValueError(f"negative quantity {order['qty']}")
        return {"ok": order["qty"] <= 100, "key": list(key)}

    @answers(("risk", "slow"), ("risk", "gated"))
    async def slow(self, key: Key, n: int) -> int:
        self.calls.append(n)
        if key[-1] == "gated":
            await self.release.wait()
        else:
            await asyncio.sleep(self.delay)
        return n * 2


class Jitter(Actor):
    """Answers ``('calc', 'square')`` after a random short delay, so answers come back out of order."""

    name = "jitter"

    @answers(("calc", "square"))
    async def square(self, key: Key, n: int) -> int:
        await asyncio.sleep(random.random() * 0.01)
        return n * n


@pytest.fixture
async def risk(memory_hub: Hub):
    actor = Risk(memory_hub)
    await actor.start()
    yield actor
    await actor.stop(0.5)


async def test_an_answering_actor_returns_its_value_to_the_caller(memory_hub, risk):
    answer = await ask(memory_hub, ("risk", "check"), {"qty": 10}, timeout=1)
    assert answer == {"ok": True, "key": ["risk", "check"]}
    assert await ask(memory_hub, ("risk", "slow"), 21, timeout=1) == 42
    stats = ask_statistics(memory_hub)
    assert (stats.asked, stats.answered, stats.requests_handled, stats.pending) == (2, 2, 2, 0)


async def test_actor_ask_reaches_another_actor_from_inside_a_handler(memory_hub, risk):
    class Strategy(Actor):
        name = "strategy"

        @handler(("signal", "*"))
        async def on_signal(self, key: Key, qty: int) -> None:
            verdict = await self.ask(("risk", "check"), {"qty": qty}, timeout=1)
            self.publish(("decision", key[1]), verdict["ok"])

    out = Subscriber(memory_hub, "out")
    out.subscribe(("decision", "*"))
    strategy = Strategy(memory_hub)
    await strategy.start()
    try:
        memory_hub.publish(("signal", "AAPL"), 500)
        assert await asyncio.wait_for(out.consume(), 2) == (("decision", "AAPL"), False)
    finally:
        await strategy.stop(0.5)


async def test_ask_raises_ask_timeout_error_and_counts_the_late_reply(memory_hub, risk):
    risk.delay = 0.2
    with pytest.raises(AskTimeoutError, match=r"no reply to ask 1 on \('risk', 'slow'\) within 0.05s"):
        await ask(memory_hub, ("risk", "slow"), 1, timeout=0.05)
    assert isinstance(AskTimeoutError("x"), TimeoutError)
    await eventually(lambda: ask_statistics(memory_hub).late == 1, 2, "late reply counted")
    stats = ask_statistics(memory_hub)
    assert (stats.timeouts, stats.answered, stats.pending, stats.duplicates) == (1, 0, 0, 0)
    risk.delay = 0.0
    assert await ask(memory_hub, ("risk", "slow"), 2, timeout=1) == 4  # the hub still asks fine


async def test_a_cancelled_ask_forgets_its_id_and_counts_the_reply_as_late(memory_hub, risk):
    risk.release.clear()
    task = asyncio.create_task(ask(memory_hub, ("risk", "gated"), 5, timeout=5))
    await eventually(lambda: risk.calls == [5], 2, "request handled")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ask_statistics(memory_hub).pending == 0
    risk.release.set()
    await eventually(lambda: ask_statistics(memory_hub).late == 1, 2, "late reply counted")


async def test_an_answerer_exception_is_raised_in_the_caller_as_answer_error(memory_hub, risk):
    with pytest.raises(
        AnswerError, match=r"risk\.check failed to answer .*ValueError: negative quantity -5"
    ) as info:
        await ask(memory_hub, ("risk", "check"), {"qty": -5}, timeout=1)
    assert (info.value.error_type, info.value.answerer) == ("ValueError", "risk.check")
    for _ in range(risk.max_consecutive_failures + 1):  # refusals are answers: the actor keeps running
        with pytest.raises(AnswerError):
            await ask(memory_hub, ("risk", "check"), {"qty": -1}, timeout=1)
    assert risk.statistics().running and risk.statistics().failures == 0
    assert await ask(memory_hub, ("risk", "check"), {"qty": 1}, timeout=1) == {
        "ok": True,
        "key": ["risk", "check"],
    }
    stats = ask_statistics(memory_hub)
    assert (stats.failed, stats.answer_errors) == (12, 12)


async def test_concurrent_asks_each_get_their_own_answer(memory_hub):
    jitter = Jitter(memory_hub)
    await jitter.start()
    try:
        numbers = list(range(300))
        results = await asyncio.gather(*(ask(memory_hub, ("calc", "square"), n, timeout=5) for n in numbers))
        assert results == [n * n for n in numbers]
        stats = ask_statistics(memory_hub)
        assert (stats.answered, stats.late, stats.duplicates, stats.unknown) == (300, 0, 0, 0)
    finally:
        await jitter.stop(0.5)


async def test_asking_a_key_nobody_answers_fails_at_once_and_sends_nothing(memory_hub, risk):
    published = memory_hub.statistics().published
    with pytest.raises(NoAnswererError, match=r"nobody answers \('risk', 'unknown'\) on hub 'memory'"):
        await ask(memory_hub, ("risk", "unknown"), 1, timeout=5)
    assert memory_hub.statistics().published == published and ask_statistics(memory_hub).no_answerer == 1


@pytest.mark.parametrize("key", [("risk", "*"), (), ("a", 1)])
async def test_an_ask_key_that_cannot_be_asked_is_refused_clearly(memory_hub, key):
    with pytest.raises(InvalidKeyError, match="ask key"):
        await ask(memory_hub, key, 1)


async def test_requests_and_replies_stay_off_ordinary_handlers_and_catch_alls(memory_hub, risk):
    everything = Subscriber(memory_hub, "everything")
    everything.subscribe(("*",))
    plain = Subscriber(memory_hub, "plain")
    plain.subscribe(("risk", "*"))
    await ask(memory_hub, ("risk", "check"), {"qty": 1}, timeout=1)
    assert everything.queue_size() == 0 and plain.queue_size() == 0


async def test_a_second_answerer_reply_is_counted_as_a_duplicate(memory_hub, risk):
    twin = Risk(memory_hub, name="risk-twin")
    await twin.start()
    try:
        assert (await ask(memory_hub, ("risk", "check"), {"qty": 3}, timeout=1))["ok"] is True
        await eventually(lambda: ask_statistics(memory_hub).duplicates == 1, 2, "duplicate counted")
    finally:
        await twin.stop(0.5)


async def test_odd_replies_and_requests_are_counted_and_dropped_without_harm(memory_hub, risk):
    spy = Subscriber(memory_hub, "spy")
    spy.subscribe(("$ask", "*"))
    assert await ask(memory_hub, ("risk", "slow"), 1, timeout=1) == 2
    _, request = await asyncio.wait_for(spy.consume(), 1)
    inbox = Key("$reply", request["reply_to"])
    memory_hub.publish(inbox, {"id": 999, "ok": 1})  # never issued
    memory_hub.publish(inbox, {"id": 1, "ok": 1})  # issued and answered already
    memory_hub.publish(inbox, "not a reply")
    memory_hub.publish(("$ask", "risk", "check"), ["not", "a", "request"])
    memory_hub.publish(("$ask", "risk", "check"), {"reply_to": "*", "id": 1, "deadline": 0})
    await eventually(lambda: ask_statistics(memory_hub).malformed == 3, 2, "malformed counted")
    stats = ask_statistics(memory_hub)
    assert (stats.unknown, stats.duplicates, stats.late) == (1, 1, 0)
    assert await ask(memory_hub, ("risk", "slow"), 3, timeout=1) == 6
    assert risk.statistics().failures == 0


async def test_a_request_whose_deadline_passed_in_the_mailbox_is_skipped(memory_hub, risk):
    risk.release.clear()
    blocker = asyncio.create_task(ask(memory_hub, ("risk", "gated"), 1, timeout=5))
    await eventually(lambda: risk.calls == [1], 2, "the gated request is being handled")
    with pytest.raises(AskTimeoutError):  # queued behind the gated one until its deadline passes
        await ask(memory_hub, ("risk", "check"), {"qty": 1}, timeout=0.05)
    risk.release.set()
    assert await blocker == 2
    await eventually(lambda: ask_statistics(memory_hub).expired == 1, 2, "expired request counted")
    assert risk.calls == [1]  # the expired request never reached the handler


async def test_every_hub_has_its_own_inbox(memory_hub, risk):
    other = Hub(name="memory")  # same name, different hub: replies must not cross
    other_risk = Risk(other)
    await other_risk.start()
    try:
        first, second = await asyncio.gather(
            ask(memory_hub, ("risk", "slow"), 1, timeout=1), ask(other, ("risk", "slow"), 10, timeout=1)
        )
        assert (first, second) == (2, 20)
        assert ask_statistics(memory_hub).unknown == ask_statistics(other).unknown == 0
    finally:
        await other_risk.stop(0.5)


async def test_loop_health_names_the_answering_method_not_its_wrapper(memory_hub, risk):
    risk.release.clear()
    task = asyncio.create_task(ask(memory_hub, ("risk", "gated"), 1, timeout=5))
    await eventually(lambda: risk.calls == [1], 2, "the gated request is being handled")
    assert risk._consumer is not None
    running = handler_running_in(risk._consumer)
    assert running is not None and running.startswith("risk.slow (") and __file__ in running
    risk.release.set()
    assert await task == 2


async def test_a_hub_that_asked_and_answered_can_still_be_garbage_collected():
    hub = Hub(name="short-lived")
    actor = Risk(hub)
    await actor.start()
    assert await ask(hub, ("risk", "slow"), 1, timeout=1) == 2
    await actor.stop(0.5)
    gone = weakref.ref(hub)
    del hub, actor
    gc.collect()
    assert gone() is None


def test_pending_table_tells_answers_late_duplicate_and_unknown_replies_apart():
    table: PendingTable[str] = PendingTable(remember=2)
    ids = [table.add(f"w{i}") for i in range(1, 5)]
    assert ids == [1, 2, 3, 4] and len(table) == 4
    assert table.take(1) == "w1"
    assert table.take(1) is None and table.duplicates == 1
    for id_ in (2, 3, 4):
        table.expire(id_)  # remembers only the last two: 3 and 4
    assert table.take(4) is None and table.late == 1
    assert table.take(4) is None and table.duplicates == 2
    assert table.take(2) is None and table.duplicates == 3  # forgotten: no longer tellable from a duplicate
    assert table.take(5) is None and table.take(0) is None and table.unknown == 2
    assert len(table) == 0


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ([1, 2], "not a map"),
        ({"reply_to": "", "id": 1, "deadline": 1}, "reply_to"),
        ({"reply_to": "a\x00b", "id": 1, "deadline": 1}, "reply_to"),
        ({"reply_to": "x", "id": "1", "deadline": 1}, "not an integer"),
        ({"reply_to": "x", "id": True, "deadline": 1}, "not an integer"),
        ({"reply_to": "x" * 256, "id": 1, "deadline": 1}, "over 255 bytes"),  # an inbox is a publisher id
        ({"reply_to": "\u00e9" * 128, "id": 1, "deadline": 1}, "over 255 bytes"),  # 256 bytes in UTF-8
    ],
)
def test_parse_request_says_why_a_request_is_malformed(message, reason):
    assert reason in parse_request(message)


def test_an_inbox_of_255_bytes_is_a_usable_reply_to_and_every_hub_has_one():
    assert parse_request({"reply_to": "x" * 255, "id": 1, "deadline": 1}) == ("x" * 255, 1, 1, None)
    hub = Hub(name="h" * 1000)  # in-process: the inbox is the name, cut to fit, and a token
    assert len(actors._ask._state(hub).inbox.encode()) <= 255


def test_parse_reply_accepts_values_and_errors_and_rejects_the_rest():
    assert parse_reply({"id": 3, "ok": None}) == (3, None, None)
    error = {"type": "KeyError", "message": "'x'", "answerer": "a.b"}
    assert parse_reply({"id": 4, "error": error}) == (4, None, error)
    assert "integer id" in parse_reply({"ok": 1})
    assert "neither" in parse_reply({"id": 1, "error": {"type": 1}})


def test_ask_names_are_public():
    for name in ("ask", "answers", "ask_statistics", "AskStatistics", "AskError", "AnswerError"):
        assert name in actors.__all__
