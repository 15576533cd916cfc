"""A broker pair: every message through two brokers, each delivered once, and a broker's death
(kill -9, then a restart on the same endpoints) loses nothing (issue 14).

Real processes: two ``tickbus broker`` and a feed -> model -> strategy pipeline, each actor its own
``tickbus run`` connected to both (``--frontend A,B``); see :mod:`tests.system.chaos.pair_actors`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

import actors
from actors.testing import ActorProcess, BrokerProcess, eventually
from tests.system.chaos.pair_actors import Reports, assert_each_tick_once, p99_over

MODULE = "tests.system.chaos.pair_actors"
RATE = 10_000  # ticks/s asked of the feed (it sends what the machine allows, paced by the clock)
AROUND = 5  # seconds before and after the kill whose latency is reported

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def pair() -> Iterator[list[BrokerProcess]]:
    brokers = [BrokerProcess.launch(), BrokerProcess.launch()]
    try:
        yield brokers
    finally:
        for broker in brokers:
            broker.close()


def start_pipeline(brokers: list[BrokerProcess]) -> dict[str, ActorProcess]:
    """Strategy first, then model, then the feed: each one's subscribers exist before it publishes."""
    procs: dict[str, ActorProcess] = {}
    for name, cls, extra in (
        ("strategy", "Strategy", ""),
        ("model", "Model", ""),
        ("feed", "Feed", f"rate = {RATE}\n"),
    ):
        config = f'[group]\nname = "{name}"\n[[actor]]\nclass = "{MODULE}:{cls}"\nname = "{name}"\n'
        if extra:
            config += "[actor.config]\n" + extra
        procs[name] = ActorProcess.launch(brokers, name=name, config_toml=config)
    return procs


async def test_kill_one_broker_under_a_10k_pipeline_loses_nothing_and_the_restart_rejoins(
    pair: list[BrokerProcess], figures
):
    reports = await Reports.connect([b.frontend for b in pair], [b.backend for b in pair])
    procs = start_pipeline(pair)
    try:
        await eventually(lambda: reports.get("strategy", "handled") > 1000, 30, "signals reach the strategy")
        await asyncio.sleep(AROUND)  # steady load before the kill
        victim = pair[1]
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        killed = time.time()
        before_kill = {n: reports.get(n, "hub")["redundant"] for n in ("model", "strategy")}
        await asyncio.sleep(AROUND)  # one broker carries the bus
        for name, proc in procs.items():
            assert proc.proc.poll() is None, f"{name} died with a broker:\n{proc.log()[-2000:]}"
        await eventually(
            lambda: all(reports.get(n, "hub", {}).get("brokers_up") == 1 for n in procs), 10, "one broker up"
        )
        restarted = BrokerProcess.launch([victim.frontend], [victim.backend])
        pair[1] = restarted
        victim.close()  # its temporary directory
        await eventually(
            lambda: all(reports.get(n, "hub", {}).get("brokers_up") == 2 for n in procs),
            20,
            "the broker rejoined",
        )
        rejoined = {n: reports.get(n, "hub")["redundant"] for n in ("model", "strategy")}
        await asyncio.sleep(2.0)  # load through both again
        reports.hub.publish(actors.Key("pair", "stop"), None)
        await eventually(lambda: reports.get("feed", "done", False), 10, "the feed stopped")
        sent = reports.get("feed", "sent")
        await eventually(lambda: reports.get("strategy", "last") == sent, 20, "the strategy caught up")
        await asyncio.sleep(0.5)  # a last report with settled counters
        strategy, model = reports.latest["strategy"], reports.latest["model"]
        p99, during = p99_over(strategy["seconds"], killed - AROUND, killed + AROUND)
        p99_before, _ = p99_over(strategy["seconds"], killed - AROUND, killed - 1)
        p99_after, _ = p99_over(strategy["seconds"], killed, killed + AROUND)
        figures(
            f"feed sent {sent} at {RATE}/s asked; strategy handled {strategy['handled']}, repeated "
            f"{strategy['repeated']}, skipped {strategy['out_of_order']}, hub gaps {strategy['hub']['gaps']}, "
            f"duplicates {strategy['hub']['duplicates']}, redundant {strategy['hub']['redundant']}; model "
            f"handled {model['handled']}, gaps {model['hub']['gaps']}; tick->decision p99 <= {p99} us over the "
            f"{2 * AROUND} s around the kill ({during} signals; before it <= {p99_before} us, after <= {p99_after} us)"
        )
        assert_each_tick_once(procs, model, strategy, sent)
        for name in ("model", "strategy"):
            assert reports.latest[name]["hub"]["redundant"] > rejoined[name] >= before_kill[name], (
                f"{name}: copies came through both brokers again after the rejoin"
            )
            # per broker (HubStatistics.by_broker, exported as tickbus.hub.broker.*): what the killed
            # broker did not bring is counted on it, while the pair lost nothing
            copies = {b["endpoint"]: b for b in reports.latest[name]["hub"]["by_broker"]}
            figures(f"{name} per broker: {sorted(copies.values(), key=lambda b: b['endpoint'])}")
            assert set(copies) == {b.frontend for b in pair} and all(b["up"] for b in copies.values())
            assert copies[victim.frontend]["missed"] > 0, f"{name}: the killed broker's missed copies"
            assert sum(b["redundant"] for b in copies.values()) == reports.latest[name]["hub"]["redundant"]
    finally:
        for proc in procs.values():
            proc.close()
        await reports.hub.close()


async def test_both_brokers_up_every_subscriber_gets_each_message_once_and_counts_the_second_copy(
    pair: list[BrokerProcess], figures
):
    frontends, backends = [b.frontend for b in pair], [b.backend for b in pair]
    publisher = await actors.connect(frontends, backends, name="pub")
    subscribers = [await actors.connect(frontends, backends, name=f"sub{i}") for i in range(2)]
    got: list[list[Any]] = [[] for _ in subscribers]
    try:
        for hub, into in zip(subscribers, got, strict=True):
            hub.add_subscriber(("md", "*"), lambda key, payload, header, into=into: into.append(payload))
            await hub.sync()
        # the publisher has seen the subscription through both brokers (its per-broker tables)
        await eventually(
            lambda: all(b"md\x00" in prefixes for prefixes in publisher._wanted.sets),
            10,
            "both brokers subscribed",
        )
        before = [hub.statistics() for hub in subscribers]
        n = 5000
        for i in range(n):
            publisher.publish(actors.Key("md", "x"), i)
            if i % 500 == 499:
                await asyncio.sleep(0.005)
        await eventually(
            lambda: all(
                hub.statistics().redundant - b.redundant == n
                for hub, b in zip(subscribers, before, strict=True)
            ),
            10,
            "every second copy arrived",
        )
        for hub, into, b in zip(subscribers, got, before, strict=True):
            stats = hub.statistics()
            figures(
                f"{hub.name}: published {n}, delivered {len(into)}, redundant {stats.redundant - b.redundant}, "
                f"gaps {stats.gaps}, duplicates {stats.duplicates}"
            )
            assert into == list(range(n)), "each message once, in order"
            assert stats.redundant - b.redundant == n * (len(pair) - 1)
            assert stats.gaps == stats.duplicates == stats.reordered == 0
            assert stats.brokers == stats.brokers_up == 2
            assert [(b.endpoint, b.up, b.missed, b.repeated) for b in stats.by_broker] == [
                (f, True, 0, 0) for f in frontends
            ]
            assert sum(b.redundant for b in stats.by_broker) == stats.redundant
    finally:
        for hub in (publisher, *subscribers):
            await hub.close()


async def test_asks_through_a_pair_are_answered_once_and_survive_a_broker_kill(pair: list[BrokerProcess]):
    pricer = ActorProcess.launch(pair, "tests.system.integration.ask_actors:Pricer", name="pricing")
    hub = await actors.connect([b.frontend for b in pair], [b.backend for b in pair], name="asker")
    group_stats = actors.Subscriber(hub, "group-stats")
    group_stats.subscribe(("$actors", "stats", "pricing"))
    try:
        for round_ in range(2):
            answers = await asyncio.gather(
                *(actors.ask(hub, ("svc", "price"), {"qty": n, "n": n}, timeout=10) for n in range(200))
            )
            assert [a["n"] for a in answers] == list(range(200))
            if round_ == 0:  # then again with one broker dead
                os.kill(pair[0].proc.pid, signal.SIGKILL)
                pair[0].proc.wait(10)
        stats = actors.ask_statistics(hub)
        assert (stats.asked, stats.answered, stats.pending) == (400, 400, 0)
        assert (stats.late, stats.duplicates, stats.unknown, stats.malformed) == (0, 0, 0, 0)
        async with asyncio.timeout(10):  # the answering group reports its side every second
            while (report := (await group_stats.consume())[1])["ask"]["requests_handled"] < 400:
                pass
        assert report["ask"]["requests_handled"] == 400, "each request answered once, not once per broker"
        assert hub.statistics().gaps == 0
    finally:
        await hub.close()
        assert pricer.close() == 0


async def test_a_snapshot_through_a_pair_takes_one_cache_whole():
    brokers = [BrokerProcess.launch(extra_args=["--lvc", "*"]) for _ in range(2)]
    frontends, backends = [b.frontend for b in brokers], [b.backend for b in brokers]
    publisher = await actors.connect(frontends, backends, name="state")
    reader = await actors.connect(frontends, backends, name="reader")
    try:
        await eventually(
            lambda: all(any(b"st".startswith(p) for p in s) for s in publisher._wanted.sets),
            10,
            "both caches listen",
        )
        for n in range(50):
            publisher.publish(actors.Key("st", f"k{n}"), n)
        await asyncio.sleep(0.5)  # both caches took the messages (nothing event-driven to wait on)
        snapshot = await reader.snapshot(("st", "*"))
        assert sorted(m.payload for m in snapshot) == list(range(50)), "each key once"
        await eventually(lambda: reader._snapshots.redundant > 0, 5, "the second cache's reply was counted")
        assert reader._snapshots.rejects == 0
    finally:
        for hub in (publisher, reader):
            await hub.close()
        for broker in brokers:
            broker.close()
