"""``python -m bench._tracing_cost``: what tracing costs an actor per message, sampled or not.

The rule it checks: an unsampled message must cost well under 1 µs more, on publish and on consume,
than with tracing disabled. Everything runs in one process on the in-process hub so the few
nanoseconds of the hooks are not lost in socket noise:

- ``origin publish``: ``Actor.publish`` outside any handler (a feed's loop): with tracing on, the
  sampler's coin toss;
- ``hop``: one message consumed by an actor whose sync handler publishes onward (consume + publish
  inside a handler), the message carrying an envelope header without trace context, as from a broker.

Each case runs ``--rounds`` times alternating the configurations; the table shows the median and
the best round in ns per message. Sampled rows (ratio 1) show what the 1% (by default) of sampled
messages cost, their spans' export included (each round ends with ``tracing.flush()``):

- ``sampled``: what ``tickbus run`` does by default, spans to the trace file under the data
  directory (a temporary one here), made and encoded on the event loop a slice at a time;
- ``sampled-otlp``: what it does with ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set, spans through the
  SDK's BatchSpanProcessor (encoded in its thread) to OTLP/HTTP JSON, here a collector process on
  loopback that reads each request and answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from typing import Any

import observability
from actors import Actor, Hub, Key, handler
from broker import FORMAT_VERSION, Header

PAYLOAD = {"sym": "AAPL", "px": 190.25, "size": 300, "t_ns": 0, "n": 1}


class Relay(Actor):
    """Republishes every ``('in', *)`` at ``('out', *)``; sets ``done`` after ``expected`` messages."""

    name = "relay"
    queue_size = 1_000_000

    async def on_start(self) -> None:
        self.count = 0
        self.expected = 0
        self.done = asyncio.Event()

    @handler(("in", "*"))
    def on_in(self, key: Key, payload: Any) -> None:
        self.publish(("out", "AAPL"), payload)
        self.count += 1
        if self.count == self.expected:
            self.done.set()


async def origin_publish_ns(n: int, sampled: bool) -> float:
    """ns per ``Actor.publish`` made outside a handler (nobody subscribes: the hub only matches)."""
    hub = Hub(name="bench")
    actor = Actor(hub, name="feed")
    publish = actor.publish
    key = ("tick", "AAPL")
    started = time.perf_counter_ns()
    for _ in range(n):
        publish(key, PAYLOAD)
    observability.tracing.flush()  # the sampled spans' export is part of their cost
    return (time.perf_counter_ns() - started) / n


async def hop_ns(n: int, sampled: bool) -> float:
    """ns per message consumed by :class:`Relay` and published onward from its handler; ``sampled``:
    the messages arrive with a trace context, as from a sampled origin."""
    hub = Hub(name="bench")
    relay = Relay(hub)
    await relay.start()
    relay.expected = n
    now = time.monotonic_ns()
    trace = [f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01", ""] if sampled else None
    header = Header(FORMAT_VERSION, "bench@host:1:abcd", 1, now, time.time_ns(), trace)
    key = Key("in", "AAPL")
    # A sync handler may run inline, inside the dispatch (no mailbox round trip): time both the
    # dispatch and whatever the mailbox's consumer still has to do after it.
    started = time.perf_counter_ns()
    for _ in range(n):
        hub._dispatch(key, PAYLOAD, header)
    await asyncio.wait_for(relay.done.wait(), 120)
    observability.tracing.flush()  # the sampled spans' export is part of their cost
    elapsed = time.perf_counter_ns() - started
    await relay.stop()
    return elapsed / n


COLLECTOR = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_port, flush=True)
server.serve_forever()
"""


def start_collector() -> tuple[subprocess.Popen[str], str]:
    """An OTLP/HTTP endpoint on loopback in a process of its own, and its traces URL."""
    process = subprocess.Popen([sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, f"http://127.0.0.1:{port}/v1/traces"


def configure(mode: str, endpoint: str | None) -> None:
    """Tracing for one configuration: ``off``, ``unsampled`` (ratio 0), ``sampled`` (ratio 1, the
    trace file) or ``sampled-otlp`` (ratio 1, the SDK's batch processor to ``endpoint``)."""
    observability.disable_tracing()
    os.environ.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    if mode == "off":
        return
    if mode == "sampled-otlp" and endpoint is not None:
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    observability.enable_tracing(  # every origin at ratio 1: no budget of traces a second
        "bench",
        sampler="parentbased_traceidratio",
        ratio=0.0 if mode == "unsampled" else 1.0,
        max_origin_spans_per_second=math.inf,
    )


def measure(
    case: Callable[[int, bool], Coroutine[Any, Any, float]],
    modes: list[str],
    n: int,
    rounds: int,
    endpoint: str | None,
) -> dict[str, list[float]]:
    """ns per message of ``case`` in each mode, ``rounds`` times, alternating the modes."""
    results: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode in modes:
            configure(mode, endpoint)
            sampled = mode.startswith("sampled")
            count = max(1, n // 200) if sampled else n  # within the span queues (2048)
            results[mode].append(asyncio.run(case(count, sampled)))
    observability.disable_tracing()
    return results


def main(argv: list[str] | None = None) -> int:
    """Run both cases and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench._tracing_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="messages per round (200,000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per configuration (7)")
    parser.add_argument("--no-sampled", action="store_true", help="skip the sampled rows")
    args = parser.parse_args(argv)
    observability.configure_logging("bench", level="WARNING", json=False)
    modes = ["off", "unsampled"] + ([] if args.no_sampled else ["sampled", "sampled-otlp"])
    rows = []
    collector, endpoint = start_collector() if "sampled-otlp" in modes else (None, None)
    try:
        with tempfile.TemporaryDirectory(prefix="tickbus-bench-tracing-") as tmp:
            os.environ["TICKBUS_DATA_DIR"] = tmp  # the default trace file goes there
            for name, case in (("origin publish", origin_publish_ns), ("hop: consume + publish", hop_ns)):
                results = measure(case, modes, args.messages, args.rounds, endpoint)
                base = statistics.median(results["off"])
                for mode in modes:
                    median = statistics.median(results[mode])
                    delta = f"{median - base:+9.0f}" if mode != "off" else f"{'':>9}"
                    rows.append(f"{name:<24} {mode:<12} {median:>10.0f} {min(results[mode]):>10.0f} {delta}")
    finally:
        if collector is not None:
            collector.kill()
            collector.wait()
    print(f"tracing cost per message, ns ({args.messages:,} messages x {args.rounds} rounds, in-process hub)")
    print(f"{'case':<24} {'tracing':<12} {'median':>10} {'best':>10} {'vs off':>9}")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
