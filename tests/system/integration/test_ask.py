"""Request/reply across processes through a real broker, over tcp and ipc: the answering actor runs
in ``tickbus run``; the asking side is this test's hub, or an actor in a second ``tickbus run``."""

from __future__ import annotations

import asyncio
import os

import pytest

import actors
from actors import AnswerError, AskTimeoutError, NoAnswererError, Subscriber, ask, ask_statistics
from actors.testing import ActorProcess, BrokerProcess, eventually

PRICER = "tests.system.integration.ask_actors:Pricer"
QUOTER = "tests.system.integration.ask_actors:Quoter"


@pytest.fixture(params=["tcp", "ipc"])
def broker(request):
    with BrokerProcess.start(transport=request.param) as running:
        yield running


@pytest.fixture
def pricer(broker):
    proc = ActorProcess.launch(broker, PRICER, name="pricing")
    yield proc
    assert proc.close() == 0


@pytest.fixture
async def hub(broker):
    connected = await actors.connect(broker.frontend, broker.backend, name="asker")
    yield connected
    await connected.close()


async def test_concurrent_asks_get_their_own_answers_from_another_process(hub, pricer):
    group_stats = Subscriber(hub, "group-stats")
    group_stats.subscribe(("$actors", "stats", "pricing"))
    answers = await asyncio.gather(
        *(ask(hub, ("svc", "price"), {"qty": n, "n": n}, timeout=10) for n in range(200))
    )
    assert [(a["n"], a["px"]) for a in answers] == [(n, n * 1.5) for n in range(200)]
    assert {a["pid"] for a in answers} == {pricer.proc.pid} != {os.getpid()}
    stats = ask_statistics(hub)
    assert (stats.asked, stats.answered, stats.pending) == (200, 200, 0)
    assert (stats.late, stats.duplicates, stats.unknown, stats.malformed) == (0, 0, 0, 0)
    async with asyncio.timeout(10):  # the answering group reports its side every second
        while (report := (await group_stats.consume())[1])["ask"]["requests_handled"] < 200:
            pass
    assert report["ask"]["requests_handled"] == 200
    assert report["ask"]["answer_errors"] == report["ask"]["expired"] == 0


async def test_answerer_errors_and_unsendable_answers_are_raised_in_the_caller(hub, pricer):
    with pytest.raises(
        AnswerError, match=r"pricer\.price failed to answer .*ValueError: negative quantity -3"
    ):
        await ask(hub, ("svc", "price"), {"qty": -3, "n": 0}, timeout=5)
    with pytest.raises(AnswerError, match=r"pricer\.unsendable .*TypeError: cannot encode set") as info:
        await ask(hub, ("svc", "unsendable"), None, timeout=5)
    assert info.value.error_type == "TypeError"
    assert (await ask(hub, ("svc", "price"), {"qty": 2, "n": 1}, timeout=5))["px"] == 3.0


async def test_a_reply_after_the_timeout_is_counted_late_and_dropped(hub, pricer):
    with pytest.raises(AskTimeoutError, match=r"within 0\.2s"):
        await ask(hub, ("svc", "slow"), 0.5, timeout=0.2)
    await eventually(lambda: ask_statistics(hub).late == 1, 5, "late reply counted")
    stats = ask_statistics(hub)
    assert (stats.timeouts, stats.answered, stats.pending, stats.duplicates) == (1, 0, 0, 0)
    assert await ask(hub, ("svc", "slow"), 0.0, timeout=5) == "done"


async def test_asking_a_key_nobody_answers_fails_fast_through_the_broker(hub, pricer):
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NoAnswererError, match=r"nobody answers \('svc', 'nobody'\)"):
        await ask(hub, ("svc", "nobody"), 1, timeout=5)
    assert loop.time() - started < 2.5  # not the 5 s timeout: known at once after the inbox is set up


async def test_a_catch_all_subscriber_does_not_pass_for_an_answerer(broker, hub, pricer):
    other = await actors.connect(broker.frontend, broker.backend, name="catch-all")
    try:
        Subscriber(other, "everything").subscribe(("*",))  # wire prefix b"": every key, reserved too
        await other.sync()
        await eventually(lambda: hub.has_subscribers(("plain", "key")), 5, "the catch-all reached the asker")
        with pytest.raises(NoAnswererError):
            await ask(hub, ("svc", "nobody"), 1, timeout=5)
        assert (await ask(hub, ("svc", "price"), {"qty": 1, "n": 1}, timeout=5))["px"] == 1.5
    finally:
        await other.close()


async def test_an_actor_asks_an_actor_in_another_process(broker, pricer, hub):
    quoter = ActorProcess.launch(broker, QUOTER, name="quoting")
    try:
        sub = Subscriber(hub, "answers")
        sub.subscribe(("quote", "answer", "*"))
        await hub.sync()
        await hub.wait_for_subscribers(("quote", "request", "1"))
        hub.publish(("quote", "request", "1"), 4)
        hub.publish(("quote", "request", "2"), -1)
        got = dict([await asyncio.wait_for(sub.consume(), 10) for _ in range(2)])
        assert got[("quote", "answer", "1")]["px"] == 6.0
        assert got[("quote", "answer", "2")] == "AnswerError"
    finally:
        assert quoter.close() == 0


async def test_asks_are_answered_again_once_a_killed_broker_is_back(broker, pricer, hub):
    assert (await ask(hub, ("svc", "price"), {"qty": 1, "n": 1}, timeout=5))["n"] == 1
    broker.proc.kill()
    broker.proc.wait()
    with pytest.raises(AskTimeoutError):  # no broker: the request goes nowhere
        await ask(hub, ("svc", "price"), {"qty": 1, "n": 2}, timeout=0.3)
    restarted = BrokerProcess.launch([broker.frontend], [broker.backend])
    try:
        loop = asyncio.get_running_loop()
        back = loop.time()
        async with asyncio.timeout(10):
            while True:  # both hubs reconnect by themselves; the first asks may beat the subscriptions
                try:
                    answer = await ask(hub, ("svc", "price"), {"qty": 1, "n": 3}, timeout=0.5)
                except AskTimeoutError:
                    continue
                except NoAnswererError:  # the answerer's subscription is not back yet: wait for it
                    await hub.wait_for_subscribers(("$ask", "svc", "price"))
                    continue
                break
        assert answer["n"] == 3
        print(f"ask answered {loop.time() - back:.2f} s after the broker came back")
    finally:
        restarted.close()
