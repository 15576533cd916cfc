"""``python -m bench._ask``: request/reply round trip through a real broker, beside pub/sub's.

Per transport (tcp, ipc): a ``tickbus broker`` process and one ``tickbus run`` process hosting
:class:`Answerer`, which answers ``('bench', 'ask')`` with the payload (``@answers``) and republishes
``('bench', 'ping')`` at ``('bench', 'pong')`` (``@handler``). This process then drives, one after the
other, at a fixed rate (default 1,000/s) on an absolute schedule, open loop (a slow answer never
delays the next request):

- ``ask``: ``await actors.ask(hub, ('bench', 'ask'), payload)``, each in its own task; round trip =
  the call's return minus its start;
- ``pub/sub echo``: ``hub.publish(('bench', 'ping'), {"t": ...})`` and a sync listener on
  ``('bench', 'pong')``; round trip = receive minus send. The same two hops through the broker
  without the ask bookkeeping: the difference is what request/reply costs.

Only the requests sent after the warm-up count. p50/p99/p99.9 in microseconds (nearest rank, same
clock, same host), the achieved rate, and what did not come back. The pacing sleeps on the event
loop (millisecond timer granularity), so requests sometimes leave in pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import actors
import observability
from actors import Actor, AskError, Key, answers, ask, ask_statistics, handler
from actors.testing import ActorProcess, BrokerProcess

from ._procs import REPO, fine_timer_slack
from ._stats import percentile

KEY_ASK = ("bench", "ask")
KEY_PING = Key("bench", "ping")
KEY_PONG = Key("bench", "pong")
PAYLOAD = {"sym": "AAPL", "side": "buy", "qty": 100, "px": 190.25}


class Answerer(Actor):
    """Answers ``('bench', 'ask')`` with its payload; echoes ``('bench', 'ping')`` as ``pong``."""

    name = "answerer"

    @answers(KEY_ASK)
    def on_ask(self, key: Key, payload: Any) -> Any:
        return payload

    @handler(KEY_PING)
    def on_ping(self, key: Key, payload: Any) -> None:
        self.hub.publish(KEY_PONG, payload)  # the hub, like the reply: no prefix, no tracing decision


async def _paced(rate: float, count: int, send: Any) -> float:
    """Call ``send(i)`` ``count`` times at ``rate`` per second on an absolute schedule; return the
    achieved rate."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    started = due = loop.time()
    for i in range(count):
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        send(i)
        due += interval
    elapsed = loop.time() - started
    return count / elapsed if elapsed > 0 else float("nan")


def _figures(latencies_ns: list[int], sent: int, rate: float) -> dict[str, Any]:
    ordered = sorted(latencies_ns)
    return {
        "sent": sent,
        "received": len(ordered),
        "send_rate": rate,
        "p50_us": percentile(ordered, 50) / 1e3,
        "p99_us": percentile(ordered, 99) / 1e3,
        "p999_us": percentile(ordered, 99.9) / 1e3,
        "max_us": ordered[-1] / 1e3 if ordered else float("nan"),
    }


async def measure_ask(hub: actors.RemoteHub, rate: float, warm: int, count: int) -> dict[str, Any]:
    """Round trips of ``ask`` at ``rate``; the first ``warm`` requests are not counted."""
    latencies: list[int] = []
    running: set[asyncio.Task[None]] = set()  # only the unfinished: thousands kept alive slow the GC
    failures: dict[str, int] = {}

    async def one(i: int) -> None:
        started = time.monotonic_ns()
        try:
            await ask(hub, KEY_ASK, PAYLOAD, timeout=2.0)
        except AskError as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            return
        if i >= warm:
            latencies.append(time.monotonic_ns() - started)

    def start(i: int) -> None:
        task = asyncio.create_task(one(i))
        running.add(task)
        task.add_done_callback(running.discard)

    achieved = await _paced(rate, warm + count, start)
    await asyncio.gather(*running)
    stats = ask_statistics(hub)
    return {
        **_figures(latencies, count, achieved),
        "failures": failures,
        "late": stats.late,
        "duplicates": stats.duplicates,
    }


async def measure_echo(hub: actors.RemoteHub, rate: float, warm: int, count: int) -> dict[str, Any]:
    """Round trips of a publish echoed back by the answerer's handler, at ``rate``."""
    latencies: list[int] = []
    done = asyncio.Event()
    last = warm + count - 1

    def on_pong(key: Key, payload: Any) -> None:
        if payload["i"] >= warm:
            latencies.append(time.monotonic_ns() - payload["t"])
        if payload["i"] == last:
            done.set()

    sub = actors.Subscriber(hub, "bench-echo")
    sub.add_sync_listener(KEY_PONG, on_pong)
    await hub.sync()
    achieved = await _paced(
        rate, warm + count, lambda i: hub.publish(KEY_PING, {"t": time.monotonic_ns(), "i": i})
    )
    with contextlib.suppress(TimeoutError):  # the missing ones are reported as not received
        await asyncio.wait_for(done.wait(), 2.0)
    await sub.remove_all_listeners()
    return _figures(latencies, count, achieved)


async def run_transport(transport: str, rate: float, warm_s: float, duration_s: float) -> dict[str, Any]:
    """Broker and answerer processes on ``transport``; both measurements; every process ended."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    warm, count = int(rate * warm_s), int(rate * duration_s)
    with BrokerProcess.start(transport=transport) as broker:
        answerer = ActorProcess.launch(broker, "bench._ask:Answerer", name="bench-answerer", env=env)
        try:
            hub = await actors.connect(broker.frontend, broker.backend, name="bench-asker")
            try:
                await hub.wait_for_subscribers(Key("$ask", *KEY_ASK))
                return {
                    "ask": await measure_ask(hub, rate, warm, count),
                    "echo": await measure_echo(hub, rate, warm, count),
                }
            finally:
                await hub.close()
        finally:
            answerer.close()


async def in_process_us(n: int, rounds: int) -> dict[str, float]:
    """Median µs per sequential round trip on the in-process hub, where only Python runs: ``ask``
    versus a publish answered by a handler's publish (both wake the actor's and the caller's task)."""
    hub = actors.Hub(name="bench")
    answerer = Answerer(hub)
    await answerer.start()
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[Any]] = []
    actors.Subscriber(hub, "pong").add_sync_listener(
        KEY_PONG, lambda key, payload: waiting.pop().set_result(payload)
    )

    async def asks() -> None:
        for _ in range(n):
            await ask(hub, KEY_ASK, PAYLOAD)

    async def echoes() -> None:
        for _ in range(n):
            future = loop.create_future()
            waiting.append(future)
            hub.publish(KEY_PING, PAYLOAD)
            await future

    timings: dict[str, list[float]] = {"ask": [], "echo": []}
    await asks()  # sets up the inbox
    for _ in range(rounds):
        for name, case in (("ask", asks), ("echo", echoes)):
            started = time.perf_counter_ns()
            await case()
            timings[name].append((time.perf_counter_ns() - started) / n / 1e3)
    await answerer.stop()
    return {name: statistics.median(values) for name, values in timings.items()}


def table(results: dict[str, dict[str, Any]], rate: float, duration_s: float) -> str:
    """The printed table: ask and pub/sub echo per transport, and their ratio."""
    columns: list[tuple[str, dict[str, Any] | None]] = []
    for transport, figures in results.items():
        ratio = {f: figures["ask"][f] / figures["echo"][f] for f in ("p50_us", "p99_us", "p999_us")}
        columns += [
            (f"ask {transport}", figures["ask"]),
            (f"pub/sub echo {transport}", figures["echo"]),
            (f"ask/echo {transport}", ratio),
        ]
    rows = [
        (f"round trip p50 (us) @ {rate:,.0f}/s", "p50_us", "{:,.1f}"),
        ("round trip p99 (us)", "p99_us", "{:,.1f}"),
        ("round trip p99.9 (us)", "p999_us", "{:,.1f}"),
        ("  achieved send rate", "send_rate", "{:,.0f}"),
        ("  sent / answered", None, ""),
    ]
    widths = [max(12, len(name) + 2) for name, _ in columns]
    lines = [f"{'':<30}" + "".join(f"{name:>{w}}" for (name, _), w in zip(columns, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    for label, field, fmt in rows:
        cells = []
        for (name, figures), w in zip(columns, widths, strict=True):
            if figures is None or (field is not None and field not in figures):
                cells.append(f"{'':>{w}}")
            elif field is None:
                text = "" if name.startswith("ask/") else f"{figures['sent']:,}/{figures['received']:,}"
                cells.append(f"{text:>{w}}")
            elif name.startswith("ask/"):
                cells.append(f"{figures[field]:.2f}x".rjust(w))
            else:
                cells.append(fmt.format(figures[field]).rjust(w))
        lines.append(f"{label:<30}" + "".join(cells))
    title = (
        f"ask round trip vs pub/sub round trip through a real broker, {rate:,.0f} requests/s for "
        f"{duration_s:g} s (answerer: a `tickbus run` process; ratio <1x = ask faster)"
    )
    return "\n".join([title, *lines])


def main(argv: list[str] | None = None) -> int:
    """Run the selected transports and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench._ask", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1_000.0, help="requests per second (1000)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per case (5)")
    parser.add_argument("--warmup", type=float, default=0.5, help="uncounted seconds first (0.5)")
    parser.add_argument("--transport", choices=["tcp", "ipc", "both"], default="both")
    parser.add_argument(
        "--in-process",
        type=int,
        default=20_000,
        help="sequential round trips on the in-process hub (0: skip)",
    )
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    observability.configure_logging("bench", level="WARNING", json=False)
    fine_timer_slack()
    transports = ["tcp", "ipc"] if args.transport == "both" else [args.transport]
    results = {}
    for transport in transports:
        print(f"[ask] {transport}: {args.duration:g}s at {args.rate:,.0f} requests/s ...", flush=True)
        results[transport] = asyncio.run(run_transport(transport, args.rate, args.warmup, args.duration))
    local = asyncio.run(in_process_us(args.in_process, 5)) if args.in_process else None
    print()
    print(table(results, args.rate, args.duration))
    if local is not None:
        print(
            f"in-process hub, {args.in_process:,} sequential round trips x 5 (median), Python only: "
            f"ask {local['ask']:.1f} us, publish + handler publish {local['echo']:.1f} us "
            f"(ask adds {local['ask'] - local['echo']:+.1f} us)"
        )
        results["in_process_us"] = local  # type: ignore[assignment]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return 0  # a measurement that failed has raised (exit status 1); losses are in the table


if __name__ == "__main__":
    sys.exit(main())
