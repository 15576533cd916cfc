"""Soak: a paced publisher and four counting actors through one broker, for an hour by default.

``make soak`` or ``.venv/bin/python -m bench.soak [--minutes 60] [--rate 10000] [--actors 4]
[--max-growth 0.05]``

Real processes, as in the chaos tier (``tests/system/chaos``): a ``tickbus broker``, a publisher process
pacing ``--rate`` messages a second, and ``--actors`` ``tickbus run`` processes each running one
counting actor. Prints a progress line a minute, then per actor the gaps (expected 0) and the exact
accounting (received + gaps + mailbox drops = published), and per process the resident set size
after a warm-up (the first 10 % of the run) against the end (expected growth at most 5 %;
``--max-growth`` for a run too short to settle, as the smoke test's).
Exits 1 when an expectation fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from actors.testing import ActorProcess, BrokerProcess
from tests.system.chaos.chaos_actors import rss_kib
from tests.system.chaos.harness import LoadGen, Observer, account, counting, wait_accounted

MAX_GROWTH = 0.05
PROGRESS = 60.0  # seconds between progress lines


async def soak(
    minutes: float, rate: int, actor_count: int, transport: str, max_growth: float = MAX_GROWTH
) -> int:
    """Run the soak; 0 when every expectation held."""
    names = [f"soak-{i}" for i in range(actor_count)]
    print(f"soak: {minutes:g} min at {rate} msgs/s to {actor_count} actors over {transport}", flush=True)
    with BrokerProcess.start(transport=transport) as broker:
        async with counting(broker, names) as (counters, observer):
            load = LoadGen.launch(broker, rate=rate, extra=["--no-timeline"])
            try:
                pids = {"broker": broker.proc.pid, "publisher": load.proc.pid}
                pids.update({name: c.proc.pid for name, c in counters.items()})
                rss = await _run(minutes * 60, pids, counters, observer)
                if rss is None:
                    return 1
                warm, end, elapsed = rss
                return await _verdict(
                    load, observer, names, warm=warm, end=end, elapsed=elapsed, max_growth=max_growth
                )
            finally:
                load.close()


async def _run(
    duration: float, pids: dict[str, int], counters: dict[str, ActorProcess], observer: Observer
) -> tuple[dict[str, int], dict[str, int], float] | None:
    """Let the load run; RSS per process after the warm-up and at the end, and the seconds run."""
    start = time.monotonic()
    warm: dict[str, int] = {}
    next_progress = start + PROGRESS
    while (now := time.monotonic()) < start + duration:
        if not warm and now >= start + duration / 10:
            warm = {name: rss_kib(pid) for name, pid in pids.items()}
            print(f"soak: warm-up over, RSS KiB {warm}", flush=True)
        if now >= next_progress:
            next_progress += PROGRESS
            received = {n: sum(observer.reports[n]["received"].values()) for n in counters}
            gaps = {n: observer.reports[n]["hub"]["gaps"] for n in counters}
            print(
                f"soak: {(now - start) / 60:5.1f} min (load average {os.getloadavg()[0]:.1f}) "
                f"received {received} gaps {gaps} "
                f"RSS KiB { {name: rss_kib(pid) for name, pid in pids.items()} }",
                flush=True,
            )
        for name, counter in counters.items():
            if counter.proc.poll() is not None:
                code = counter.proc.returncode
                print(f"soak: FAIL: actor {name} exited with {code}:\n{counter.log()[-2000:]}")
                return None
        await asyncio.sleep(1.0)
    return warm, {name: rss_kib(pid) for name, pid in pids.items()}, time.monotonic() - start


async def _verdict(
    load: LoadGen,
    observer: Observer,
    names: list[str],
    *,
    warm: dict[str, int],
    end: dict[str, int],
    elapsed: float,
    max_growth: float,
) -> int:
    """Stop the load, wait for exact accounting, print the figures; 0 when they meet expectations."""
    load.halt()
    await wait_accounted(observer, names, load.publisher_id, load.published, timeout=60)
    failures: list[str] = []
    print(f"soak: published {load.published} in {elapsed:.0f} s ({load.published / elapsed:.0f} msgs/s)")
    for name in names:
        seen = account(observer.reports[name], load.publisher_id)
        accounted = seen["received"] + seen["gaps"] + seen["dropped"]
        print(f"soak: {name}: {seen}, received + gaps + drops = {accounted} (published {load.published})")
        if seen["gaps"]:
            failures.append(f"{name} counted {seen['gaps']} gaps")
        if seen["dropped"]:
            failures.append(
                f"{name} dropped {seen['dropped']} from its full mailbox (counted: it fell behind)"
            )
    for name, after in end.items():
        growth = (after - warm[name]) / warm[name] if warm.get(name) else float("nan")
        before = warm.get(name, 0)
        print(f"soak: RSS {name}: {before} KiB after warm-up, {after} KiB at the end, growth {growth:+.2%}")
        if not growth <= max_growth:
            failures.append(f"{name} grew {growth:+.2%}")
    verdict = "FAIL: " + "; ".join(failures) if failures else "PASS"
    print(f"soak: {verdict} (expected: nothing lost, RSS growth <= {max_growth:.0%})")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=10_000, help="messages per second")
    parser.add_argument("--actors", type=int, default=4)
    parser.add_argument("--transport", choices=("tcp", "ipc"), default="tcp")
    parser.add_argument("--max-growth", type=float, default=MAX_GROWTH, help="RSS growth allowed (0.05)")
    args = parser.parse_args(argv)
    return asyncio.run(soak(args.minutes, args.rate, args.actors, args.transport, args.max_growth))


if __name__ == "__main__":
    raise SystemExit(main())
