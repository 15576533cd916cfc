"""A broker pair across hosts (issue 14): brokers on hosts a and d, the feed -> model -> strategy
pipeline of :mod:`tests.system.chaos.pair_actors` on hosts b and c connected to both, CURVE on (both
brokers serve with one key pair), and host d's cable pulled out of the switch for 5 s under load.

While d is out its connections go quiet rather than closed: each hub keeps publishing into it until
its ZMTP heartbeats drop the connection (2.5 s), and the other broker brings every message meanwhile.
Nothing may be lost, repeated or counted as a gap; when the cable is back every hub reconnects to d
and second copies (``redundant``) flow again. The figures line reports the achieved rate and the
tick -> decision p99 over the 10 s around the cut (2.5 s before it, the cut, 2.5 s after).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import actors
from actors.testing import eventually
from tests.system.chaos.pair_actors import Reports, assert_each_tick_once, p99_over
from tests.system.netns.hosts import Cluster, HostProcess, Network

pytestmark = pytest.mark.timeout(240)

MODULE = "tests.system.chaos.pair_actors"
RATE = 10_000  # ticks/s asked of the feed (it sends what the machine allows, paced by the clock)
CUT_SECONDS = 5.0
STEADY = 5.0  # seconds of load through both brokers before the cut
MARGIN = 2.5  # seconds either side of the cut in the reported p99
GROUPS = ("feed", "model", "strategy")
LOST = "lost broker 2's"  # the hubs' warning when broker 2 (host d) goes: once per hub


@pytest.fixture
def pair(network: Network, keys: dict[str, Path], tmp_path: Path) -> Iterator[Cluster]:
    """Brokers on hosts a and d, sharing the key pair ``broker``."""
    with Cluster(network, keys, tmp_path, broker_hosts=("a", "d")) as running:
        yield running


async def test_a_5s_cut_of_one_broker_host_under_load_loses_nothing_and_it_rejoins(
    network: Network, pair: Cluster
) -> None:
    brokers = [pair.broker("a"), pair.broker("d")]
    procs: dict[str, HostProcess] = {  # before the observer: starting one blocks the loop until ready
        "strategy": pair.group("c", "strategy", f"{MODULE}:Strategy"),
        "model": pair.group("b", "model", f"{MODULE}:Model"),
    }
    procs["feed"] = pair.group("b", "feed", f"{MODULE}:Feed", rate=RATE)
    reports = await Reports.connect(pair.frontends, pair.backends, pair.observer_curve())
    try:

        def hubs_up(n: int) -> bool:
            return reports.hubs(GROUPS, "brokers_up") == [n] * len(GROUPS)

        await eventually(lambda: reports.get("strategy", "handled") > 1000, 30, "signals reach host c")
        await eventually(lambda: hubs_up(2), 20, "every hub connected to both brokers")
        steady_from, steady_sent = time.monotonic(), reports.get("feed", "sent")
        await asyncio.sleep(STEADY)  # load through both brokers
        assert min(reports.hubs(("model", "strategy"), "redundant")) > 0, "second copies before the cut"

        cut_wall, cut = time.time(), time.monotonic()
        network.cut("d")
        await eventually(lambda: hubs_up(1), 20, "every hub dropped host d's broker")
        await eventually(lambda: all(p.first(LOST, cut) for p in procs.values()), 10, "each hub warned")
        noticed = max((p.first(LOST, cut) or cut) - cut for p in procs.values())
        await asyncio.sleep(max(0.0, cut + CUT_SECONDS - time.monotonic()))  # the cable stays out 5 s
        network.restore("d")
        restored = time.monotonic()
        await eventually(lambda: hubs_up(2), 30, "every hub reconnected to host d's broker")
        rejoined_after = time.monotonic() - restored
        rejoined = reports.hubs(("model", "strategy"), "redundant")

        def copies_again() -> bool:
            now = reports.hubs(("model", "strategy"), "redundant")
            return all(n > r + 1000 for n, r in zip(now, rejoined, strict=True))

        await eventually(copies_again, 20, "second copies through host d again")
        await asyncio.sleep(max(0.0, restored + MARGIN + 1.0 - time.monotonic()))  # past the p99 span

        for name, proc in {**procs, "broker a": brokers[0], "broker d": brokers[1]}.items():
            assert proc.proc.poll() is None, f"{name} died:\n{proc.log()[-2000:]}"
        reports.hub.publish(actors.Key("pair", "stop"), None)
        await eventually(lambda: reports.get("feed", "done", False), 10, "the feed stopped")
        sent, stopped = reports.get("feed", "sent"), time.monotonic()
        await eventually(lambda: reports.get("strategy", "last") == sent, 30, "the strategy caught up")
        await asyncio.sleep(0.5)  # a last report with settled counters (reports come every 200 ms)
        strategy, model = reports.latest["strategy"], reports.latest["model"]
        p99, during = p99_over(strategy["seconds"], cut_wall - MARGIN, cut_wall + CUT_SECONDS + MARGIN)
        p99_before, _ = p99_over(strategy["seconds"], cut_wall - STEADY, cut_wall - 1)
        lost_lines = {name: [line for _, line in p.lines if LOST in line] for name, p in procs.items()}
        print(
            f"\nfeed sent {sent} at {RATE}/s asked, {(sent - steady_sent) / (stopped - steady_from):.0f}/s "
            f"achieved; strategy handled {strategy['handled']}, repeated {strategy['repeated']}, skipped "
            f"{strategy['out_of_order']}, hub gaps {strategy['hub']['gaps']}, duplicates "
            f"{strategy['hub']['duplicates']}, redundant {strategy['hub']['redundant']}; model handled "
            f"{model['handled']}, gaps {model['hub']['gaps']}, duplicates {model['hub']['duplicates']}, "
            f"redundant {model['hub']['redundant']}\n"
            f"host d cut for {CUT_SECONDS:.0f} s: the last hub dropped it after {noticed:.2f} s, every hub "
            f"was back on it {rejoined_after:.2f} s after the restore\n"
            f"tick->decision p99 <= {p99} us over the {CUT_SECONDS + 2 * MARGIN:.0f} s around the cut "
            f"({during} signals; <= {p99_before} us in the {STEADY - 1:.0f} s before it)\n"
            + "\n".join(f"{name}: {lines}" for name, lines in lost_lines.items())
        )
        assert_each_tick_once(procs, model, strategy, sent)
        for report in (model, strategy):
            assert report["hub"]["brokers"] == report["hub"]["brokers_up"] == 2, report["hub"]
        for name, lines in lost_lines.items():
            assert len(lines) == 1, f"{name}: one warning for the lost broker, got {lines}"
    finally:
        await reports.hub.close()
