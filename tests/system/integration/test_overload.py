"""Overload in one process: a flooded actor and a quiet one share a hub (issue 12's functional test).

A publisher process floods ``('flood', 'x')`` far past what the flooded actor's handler (20 us of
work a message) can take, while one ``('quiet', 'x')`` goes out every 20 ms and one ``('rare', N)``,
one of 400 keys in turn, every 5 ms. Nothing here is timed
against a rate: the test waits for the flood to end and for the accounting to close, then checks
what happened during it. The one bound on time is the age of what the flooded handler gets late in
the flood, against the heartbeat's timeout (2 s): a hub reading slower than a flood used to hand its
handler ever older messages (growing ~1 s a second) until its connection was lost.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import subprocess
import sys
import time
from typing import Any, NamedTuple

import actors
from actors.testing import eventually

from .flood_publisher import RARE_KEYS

FLOOD_SECONDS = 3.0


class Flooded(actors.Actor):
    name = "flooded"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last = 0
        self.ages: list[tuple[int, int]] = []  # (handled at, sent at) in monotonic ns, every 100th call

    @actors.handler(("flood", "*"))
    def on_flood(self, key: Any, payload: Any) -> None:
        self.last = payload[0]
        if self.last % 100 == 0:
            self.ages.append((time.monotonic_ns(), payload[1]))
        end = time.perf_counter() + 20e-6  # a handler with real work: the flood outruns it
        while time.perf_counter() < end:
            pass


class Quiet(actors.Actor):
    name = "quiet"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled_at: list[float] = []
        self.ticks: list[float] = []
        self.rare: list[int] = []

    @actors.handler(("quiet", "*"))
    def on_quiet(self, key: Any, payload: Any) -> None:
        self.handled_at.append(time.monotonic())

    @actors.handler(("rare", "*"))
    def on_rare(self, key: Any, payload: Any) -> None:
        self.rare.append(payload[0])

    @actors.every(0.02)
    def tick(self) -> None:
        self.ticks.append(time.monotonic())


def _flood_publisher(broker: Any, seconds: float) -> subprocess.Popen[str]:
    """``tests.system.integration.flood_publisher`` flooding for ``seconds``: see its doc."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.system.integration.flood_publisher",
            broker.frontend,
            broker.backend,
            str(seconds),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    """Close the flood publisher's stdin (it then leaves) and wait for it, killing it after 10 s."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Done(NamedTuple):
    """The flood publisher's last line: how many it published of each kind, how many it refused."""

    floods: int
    quiets: int
    dropped: int
    rares: int
    rares_dropped: int

    @property
    def published(self) -> int:
        """Messages that left the publisher."""
        return self.floods + self.quiets + self.rares - self.dropped


async def _start(proc: subprocess.Popen[str], quiet: Quiet) -> None:
    """Let the flood start once ``quiet`` has each rare key's first message (see flood_publisher)."""
    assert await _line(proc, 30) == "seeded"
    await eventually(lambda: len(quiet.rare) == RARE_KEYS, 10, "the rare keys' first messages")
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert await _line(proc, 30) == "start"


async def _done(proc: subprocess.Popen[str]) -> Done:
    word, *counts = (await _line(proc, 60)).split()
    assert word == "done"
    return Done(*map(int, counts))


async def _line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(
        asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline), timeout
    )
    assert line, f"the flood publisher exited (rc={proc.poll()})"
    return line.strip()


async def test_a_flooded_actor_does_not_starve_its_neighbour_and_is_not_starved_itself(tickbus_broker):
    hub = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="victim")
    flooded, quiet = Flooded(hub), Quiet(hub)
    await flooded.start()
    await quiet.start()
    await hub.sync()
    proc = _flood_publisher(tickbus_broker, FLOOD_SECONDS)
    try:
        await _start(proc, quiet)
        started = time.monotonic()
        handled_at_start = flooded.statistics().handled
        last_at_start = flooded.last
        done = await _done(proc)
        ended = time.monotonic()
        handled_during = flooded.statistics().handled - handled_at_start
        progressed = flooded.last - last_at_start

        # the accounting closes: every flood and quiet message was handled or counted as a gap
        published = done.published
        await eventually(
            lambda: (
                flooded.statistics().handled + quiet.statistics().handled + hub.statistics().gaps >= published
            ),
            60,
            "handled + gaps to cover what was published",
        )
        stats = hub.statistics()
        total = flooded.statistics().handled + quiet.statistics().handled
        # ages of what the flooded handler got in the flood's last second (monotonic ns: one host)
        late = [(at - sent) / 1e9 for at, sent in flooded.ages if (ended - 1.0) * 1e9 <= at <= ended * 1e9]
        print(
            f"published {done.floods} flood + {done.quiets} quiet + {done.rares} rare ({done.dropped} "
            f"refused at the publisher, {done.rares_dropped} of them rare); flooded handled "
            f"{flooded.statistics().handled} ({handled_during} during the flood), quiet handled "
            f"{quiet.statistics().handled - len(quiet.rare)}, rare {sum(n > 0 for n in quiet.rare)}, gaps {stats.gaps}, holds {hub.holds}, "
            f"timer runs during the flood {sum(started <= t <= ended for t in quiet.ticks)}, "
            f"oldest handled in its last second {max(late, default=0):.2f} s, skimmed {hub.skimmed}"
        )
        assert total + stats.gaps == published, "every undelivered message is counted as a gap"
        assert stats.gaps > 0, "the flood outran the handler (else this test proves nothing)"
        # the flooded handler kept handling during the flood, nothing decoded to be dropped
        assert handled_during > 0 and progressed > 0
        assert flooded.statistics().dropped == 0 and quiet.statistics().dropped == 0
        # the newest: late in the flood the flooded handler gets messages that waited less than the
        # heartbeat's timeout (the hub discarded what waited longer: skimmed), and the connection held
        assert late, "nothing handled in the flood's last second"
        assert max(late) < 2.0, (max(late), stats.disconnects, hub.skimmed)
        assert stats.disconnects == 0 and hub.skimmed > 0, (stats.disconnects, hub.skimmed)
        # the quiet neighbour: its timer kept running through the flood, and its handler ran in it
        during = [t for t in quiet.ticks if started <= t <= ended]
        assert len(during) >= 2
        edges = [started, *during, ended]
        assert max(b - a for a, b in itertools.pairwise(edges)) < 1.0, "the timer stalled"
        assert any(started <= t <= ended + 1.0 for t in quiet.handled_at), "no quiet message handled"
        # a rare message, on a key of its own, is its stream's newest in any skim: it is delivered,
        # not discarded with the flood. The broker's full queue drops messages of every key alike
        # (counted as gaps, not skimmed) before they reach the hub: how many depends on how much
        # faster the publisher is than this hub reads (a few % on a slow VM, ~60 % on a fast one), so
        # the rare ones are judged against the share of messages that reached the hub. Before the
        # skim kept each key's newest, ~13 % of that share was handled (as of the quiet key).
        sent = done.rares - RARE_KEYS - done.rares_dropped  # during the flood
        during_flood = sum(n > 0 for n in quiet.rare)
        reached = 1 - (stats.gaps - hub.skimmed) / published  # the share the broker passed on
        expected = reached * sent
        assert expected >= 30, f"the broker passed too few messages to judge ({reached:.1%} of {published})"
        assert during_flood >= 0.5 * expected, (during_flood, sent, f"{reached:.1%} reached the hub")
    finally:
        _stop(proc)
        await flooded.stop(1)
        await quiet.stop(1)
        await hub.close()


class SlowAsync(actors.Actor):
    name = "slow-async"
    queue_size = 1_000

    @actors.handler(("flood", "*"))
    async def on_flood(self, key: Any, payload: Any) -> None:
        await asyncio.sleep(0)  # an async handler: its messages go through the mailbox
        end = time.perf_counter() + 20e-6
        while time.perf_counter() < end:
            pass


async def test_a_full_mailbox_stops_the_hub_reading_and_every_loss_is_counted(tickbus_broker):
    hub = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="victim")
    slow, quiet = SlowAsync(hub), Quiet(hub)
    await slow.start()
    await quiet.start()
    await hub.sync()
    proc = _flood_publisher(tickbus_broker, 2)
    try:
        await _start(proc, quiet)
        published = (await _done(proc)).published

        def accounted() -> int:
            return (
                slow.statistics().handled
                + slow.statistics().dropped
                + quiet.statistics().handled
                + hub.statistics().gaps
            )

        await eventually(lambda: accounted() >= published, 60, "handled + dropped + gaps to cover it")
        print(
            f"published {published}; handled {slow.statistics().handled}, mailbox dropped "
            f"{slow.statistics().dropped}, gaps {hub.statistics().gaps}, holds {hub.holds}"
        )
        assert accounted() == published
        assert hub.holds > 0, "the full mailbox stopped the reading"
        # reading stops at a full mailbox: the mailbox drops at most what one read slice brings
        assert slow.statistics().dropped < hub.statistics().gaps
        assert quiet.ticks, "the neighbour's timer ran"
    finally:
        _stop(proc)
        await slow.stop(1)
        await quiet.stop(1)
        await hub.close()


async def test_with_max_lag_inf_a_hub_behind_a_flood_discards_nothing_and_still_counts_every_loss(
    tickbus_broker,
):
    # the knob: the handlers work through every queued message, however old (what a recorder wants)
    hub = await actors.connect(
        tickbus_broker.frontend, tickbus_broker.backend, name="victim", max_lag=math.inf
    )
    flooded, quiet = Flooded(hub), Quiet(hub)
    await flooded.start()
    await quiet.start()
    await hub.sync()
    proc = _flood_publisher(tickbus_broker, 2)
    try:
        await _start(proc, quiet)
        published = (await _done(proc)).published
        await eventually(
            lambda: (
                flooded.statistics().handled + quiet.statistics().handled + hub.statistics().gaps >= published
            ),
            60,
            "handled + gaps to cover what was published",
        )
        stats = hub.statistics()
        print(
            f"published {published}; handled {flooded.statistics().handled}, gaps {stats.gaps}, "
            f"disconnects {stats.disconnects}, renewed {stats.renewed}"
        )
        assert flooded.statistics().handled + quiet.statistics().handled + stats.gaps == published
        assert hub.skimmed == 0 == stats.skimmed
    finally:
        _stop(proc)
        await flooded.stop(1)
        await quiet.stop(1)
        await hub.close()
