"""A hub's bounds on what peers make it hold or believe (issue 11): pending asks and held replies,
snapshot replies, implausible send times, reply inboxes, an actor's metric attributes. In-process
hubs, and a broker-connected one connected to no broker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import actors
from actors import Actor, AskError, Hub, HubLimits, Key, SnapshotError, answers, ask, ask_statistics, handler
from actors._inbound import Inbound
from actors._limits import ClockSkew
from actors._liveness import LagMonitor
from actors._snapshot import MAX_PARTS, SnapshotClient, SnapshotRequest
from actors.testing import eventually
from broker import Header, encode_header, encode_key, encode_message
from observability import EnvelopeError, RateLimitedLog

SEC = 1_000_000_000


# -- clock skew -----------------------------------------------------------------------------------
def test_clock_skew_passes_plausible_ages_and_counts_the_rest():
    skew = ClockSkew(max_skew=60, max_age=3600)
    now = 10_000 * SEC
    assert skew.age_ns(now, now - 5 * SEC) == 5 * SEC
    assert skew.age_ns(now, now + 30 * SEC) == -30 * SEC  # a little ahead: NTP's business
    assert skew.age_ns(now, 0) is None  # wall_ns = 0
    assert skew.age_ns(now, now + 61 * SEC) is None
    assert skew.age_ns(now, now - 3601 * SEC) is None
    assert skew.skewed == 3


def test_a_header_with_wall_ns_zero_does_not_flag_the_receiver_slow_and_is_counted():
    lag = LagMonitor(1.0)
    now = time.time_ns()
    for seq in range(1, 20):
        # even while the hub is behind: an implausible time says nothing of it
        assert lag.check(Header(1, "rogue@elsewhere:1:a", seq, 0, 0, None), 0, now, behind=True) is None
    assert (lag.slow, lag.lag, lag.skew.skewed) == (False, 0.0, 19)
    far_future = Header(1, "rogue@elsewhere:1:a", 20, 0, now + 3600 * SEC, None)
    assert lag.check(far_future, 0, now, behind=True) is None and lag.skew.skewed == 20
    genuine = Header(1, "p@elsewhere:1:a", 1, 0, now - 2 * SEC, None)
    assert lag.check(genuine, 0, now, behind=True) == "slow"


def test_hub_limits_are_validated_and_reach_the_clock_skew_filter():
    hub = Hub(name="h")
    hub.set_limits(HubLimits(max_clock_skew=1, max_message_age=2))
    assert hub.clock_skew.age_ns(10 * SEC, 7 * SEC) is None
    assert hub.statistics().skewed == 1
    for bad in (
        {"max_pending_asks": 0},
        {"max_snapshot_entries": 1.5},
        {"max_clock_skew": 0},
        {"max_message_age": True},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            HubLimits(**bad)


class Probe(Actor):
    name = "probe"

    async def on_start(self) -> None:
        self.handled = 0

    @handler(("in", "*"))
    def on_in(self, key: Key, payload: Any) -> None:
        self.handled += 1


async def test_an_actor_ignores_skewed_send_times_for_latency_and_the_hub_counts_them():
    hub = Hub(name="memory")
    actor = Probe(hub)
    await actor.start()
    try:
        trace = ["00-not-a-traceparent-01", ""]  # only traced in-process messages carry a header
        hub.publish(Key("in", "a"), 1, trace)  # in-process: the header's times are now, plausible
        await eventually(lambda: actor.handled == 1, 5, "handled")
        before = actor.latency_ns.count
        hub.clock_skew.configure(-1.0, -1.0)  # nothing is plausible any more
        await asyncio.sleep(0.001)  # past the actor's 50 us sampling interval: this one is timed
        hub.publish(Key("in", "a"), 2, trace)
        await eventually(lambda: actor.handled == 2, 5, "handled")
        assert actor.latency_ns.count == before
        assert hub.statistics().skewed == 1
    finally:
        await actor.stop(1)


# -- snapshot replies -----------------------------------------------------------------------------
def _entry(n: int) -> list[bytes]:
    import msgpack

    return [encode_key(("px", str(n))), encode_header("p@h:1:t", n + 1, 1, 1), msgpack.packb(n)]


async def test_a_snapshot_reply_over_the_entry_bound_fails_the_snapshot_instead_of_filling_memory():
    request = SnapshotRequest("r", max_entries=10)
    request.add_part({"id": "r", "part": 0, "parts": 3, "entries": [_entry(n) for n in range(6)]})
    with pytest.raises(ValueError, match="over the bounds"):
        request.add_part({"id": "r", "part": 1, "parts": 3, "entries": [_entry(n) for n in range(6)]})
    with pytest.raises(SnapshotError, match="too large"):
        request.done.result()


@pytest.mark.parametrize(
    ("parts", "why"),
    [
        ([{"part": 0, "parts": MAX_PARTS + 1, "entries": []}], "over the bounds"),
        ([{"part": 0, "parts": 3, "entries": []}, {"part": 1, "parts": 2, "entries": []}], "earlier one"),
        ([{"part": 0, "parts": 3, "entries": []}, {"part": 0, "parts": 3, "entries": []}], "twice"),
        ([{"part": 0, "parts": 1, "entries": []}, {"part": 0, "parts": 1, "entries": []}], "complete"),
        ([{"part": -1, "parts": 1, "entries": []}], "lacks"),
        ([{"part": 0, "parts": 2**70, "entries": []}], "over the bounds"),
    ],
)
async def test_snapshot_parts_that_contradict_each_other_are_refused(parts, why):
    request = SnapshotRequest("r", max_entries=100_000)
    with pytest.raises(ValueError, match=why):
        for part in parts:
            request.add_part({"id": "r", **part})


async def test_the_snapshot_client_survives_any_part_on_its_inbox_and_counts_what_it_drops():
    hub = Hub(name="memory")
    client = SnapshotClient(hub, "me@h:1:t", RateLimitedLog())
    request = SnapshotRequest("r1", max_entries=1000)
    client._pending["r1"] = request
    hostile: list[Any] = [
        None,
        1,
        "x",
        [],
        {"id": ["unhashable"]},
        {"id": "nobody"},
        {"id": "r1"},
        {"id": "r1", "part": "0", "parts": 1, "entries": []},
        {"id": "r1", "part": 0, "parts": 10**9, "entries": []},
    ]
    for payload in hostile:
        client._on_part(Key("$lvc", "snap", "me@h:1:t"), payload, None)  # never raises
    assert client.rejects == len(hostile)
    assert request.done.done() and isinstance(request.done.exception(), SnapshotError)


async def test_undecodable_snapshot_entries_are_counted_and_the_rest_delivered():
    request = SnapshotRequest("r")
    request.add_part(
        {"id": "r", "part": 0, "parts": 1, "entries": [_entry(1), [b"\xff", b"h", b"p"], "x", _entry(2)]}
    )
    assert [m.payload for m in request.done.result()] == [1, 2]
    assert request.rejected == 2


# -- asks -----------------------------------------------------------------------------------------
class Silent(Actor):
    """Answers ('svc', 'hold') only when released: its asks stay pending."""

    name = "silent"

    async def on_start(self) -> None:
        self.release = asyncio.Event()

    @answers(("svc", "hold"))
    async def hold(self, key: Key, payload: Any) -> Any:
        await self.release.wait()
        return payload


async def test_asks_beyond_max_pending_asks_are_refused_at_once_and_counted():
    hub = Hub(name="memory")
    hub.set_limits(HubLimits(max_pending_asks=5))
    silent = Silent(hub)
    await silent.start()
    try:
        waiting = [asyncio.create_task(ask(hub, ("svc", "hold"), n, timeout=10)) for n in range(5)]
        await eventually(lambda: ask_statistics(hub).pending == 5, 5, "five asks pending")
        with pytest.raises(AskError, match="5 asks waiting for replies already"):
            await ask(hub, ("svc", "hold"), 99, timeout=10)
        assert ask_statistics(hub).refused == 1
        silent.release.set()
        assert await asyncio.gather(*waiting) == list(range(5))
        assert await ask(hub, ("svc", "hold"), 6, timeout=5) == 6  # room again
    finally:
        await silent.stop(1)


class Echo(Actor):
    name = "echo"

    @answers(("svc", "echo"))
    def echo(self, key: Key, payload: Any) -> Any:
        return payload


async def test_an_answerer_holds_at_most_max_pending_asks_replies_for_unrouted_inboxes():
    hub = Hub(name="memory")
    hub.set_limits(HubLimits(max_pending_asks=100))
    echo = Echo(hub)
    await echo.start()
    try:
        deadline = time.time_ns() + 3600 * SEC  # a peer's far deadline: held 5 s at most anyway
        for n in range(1000):
            hub.publish(
                Key("$ask", "svc", "echo"),
                {"reply_to": f"nobody-{n}", "id": n, "deadline": deadline, "payload": n},
            )
        await eventually(lambda: ask_statistics(hub).requests_handled == 1000, 5, "requests handled")
        stats = ask_statistics(hub)
        assert (stats.replies_waiting, stats.replies_dropped) == (100, 900)
        assert await ask(hub, ("svc", "echo"), "legit", timeout=5) == "legit"  # routed: not held
    finally:
        await echo.stop(1)


async def test_a_request_with_an_overlong_reply_to_is_refused_not_answered_nor_held():
    # a 64 KiB reply_to with a far deadline blocked the answering hub's loop for 0.5 s (every prefix
    # of the reply key hashed, again in each waiting reply on each subscription change) and was cached
    hub = Hub(name="memory")
    echo = Echo(hub)
    await echo.start()
    try:
        deadline = time.time_ns() + 3600 * SEC
        for n in range(3):
            hub.publish(
                Key("$ask", "svc", "echo"),
                {"reply_to": "i" * 64 * 1024, "id": n, "deadline": deadline, "payload": n},
            )
        await eventually(lambda: ask_statistics(hub).malformed == 3, 5, "requests refused")
        stats = ask_statistics(hub)
        assert (stats.requests_handled, stats.replies_waiting, stats.replies_dropped) == (0, 0, 0)
        assert actors._ask._state(hub)._reply_keys == {}
        assert await ask(hub, ("svc", "echo"), "legit", timeout=5) == "legit"
    finally:
        await echo.stop(1)


class _CountingSet(set[bytes]):
    """A prefix set that records the length of every prefix looked up in it."""

    def __init__(self, *items: bytes) -> None:
        super().__init__(items)
        self.looked: list[int] = []

    def __contains__(self, item: object) -> bool:
        self.looked.append(len(item))  # type: ignore[arg-type]
        return super().__contains__(item)


async def test_whether_a_key_is_wanted_looks_up_no_prefix_longer_than_max_subscription(lonely_hub):
    hub = lonely_hub(max_subscription=4096)
    hub._wanted.prefixes = prefixes = _CountingSet(b"t\x00x\x00", b"u", b"$reply\x00inbox\x00", b"wx")
    assert [
        hub._wanted.wants(encode_key(k))
        for k in [("t", "x"), ("t", "x", "y"), ("t", "y"), ("u", "1"), ("v",), ("wxy",)]
    ] == [True, True, False, True, False, True]  # any byte prefix: a foreign ZeroMQ subscriber's too
    assert hub.has_subscribers(("$reply", "inbox")) and not hub.has_subscribers(("$reply", "other"))
    assert not hub.has_subscribers(("$u",))  # a reserved key: no first byte, no catch-all
    prefixes.looked.clear()
    huge = encode_key(("$reply", "i" * 1024 * 1024))  # the reply key of a 1 MiB reply_to: ~2 min
    assert not hub._wanted.wants(huge) and not hub.has_subscribers(("$reply", "i" * 1024 * 1024))
    assert len(prefixes.looked) <= 2 * 4097 and max(prefixes.looked) <= 4096  # none past max_subscription
    with pytest.raises(TimeoutError):
        await hub.wait_for_subscribers(("$reply", "i" * 1024 * 1024), timeout=0.05)


async def test_a_hub_publishes_no_key_its_subscribers_would_drop(lonely_hub):
    hub = lonely_hub()
    with pytest.raises(EnvelopeError, match="over max_key=512"):
        hub.publish(("t", "x" * 510), 1)
    assert hub.publish(("t", "x" * 509), 1) == 0  # under it: skipped as usual, nobody listens
    with pytest.raises(ValueError, match="max_key"):
        lonely_hub(max_key=100)  # under a reply key to the longest inbox
    with pytest.raises(ValueError, match="idle_heartbeat"):
        lonely_hub(idle_heartbeat=7200)  # every subscriber would refuse its heartbeats
    for bad in (0, -1.0, float("nan"), "1", True):
        with pytest.raises(ValueError, match="max_lag"):
            lonely_hub(max_lag=bad)


class Anything(Actor):
    name = "anything"

    async def on_start(self) -> None:
        self.handled = 0

    @handler(("*", "x"))
    def on_any(self, key: Key, payload: Any) -> None:
        self.handled += 1


async def test_peers_choose_neither_an_actors_metric_attributes_nor_how_many_hosts_it_remembers(monkeypatch):
    # messages_in is exported as messaging.destination.name: keyed by the key's first segment, a
    # leading-'*' pattern let peers add one series per made-up segment (50,000 confirmed), and
    # _hosts grew one entry per made-up publisher id
    monkeypatch.setattr(actors._actor, "_SAMPLE_NS", 0)  # every message's latency recorded
    hub = Hub(name="victim")
    anything, probe = Anything(hub), Probe(hub)
    await anything.start()
    await probe.start()
    inbound = Inbound(hub._index, max_payload=1024, log=RateLimitedLog(), name="victim")
    try:
        now = time.time_ns()
        n = actors._actor._HOSTS_LIMIT + 2_000
        for i in range(n):
            inbound.handle(
                encode_message(
                    encode_key((f"made-up-{i}", "x")), encode_header(f"rogue@h{i}:1:a", 1, 0, now), b"\x01"
                )
            )
            if i % 10 == 0:
                inbound.handle(
                    encode_message(
                        encode_key(("in", "a")), encode_header("p@h:1:a", i // 10 + 1, 0, now), b"\x01"
                    )
                )
        assert anything.handled == n and probe.handled == n // 10
        assert anything.messages_in == {"*": n} and probe.messages_in == {"in": n // 10}
        assert anything.latency_ns.count == n  # each looked its publisher's host up
        assert len(anything._hosts) <= actors._actor._HOSTS_LIMIT
    finally:
        await anything.stop(1)
        await probe.stop(1)


async def test_publishers_forgotten_by_the_liveness_table_show_in_the_hub_statistics(lonely_hub):
    from actors._liveness import DEFAULT_MAX_PUBLISHERS

    hub = lonely_hub()
    for i in range(DEFAULT_MAX_PUBLISHERS + 5):
        hub._watch.liveness.heard(f"made-up@h{i}:1:a", 1.0, 0.0)
    assert hub.statistics().publishers_evicted == 5
