"""``python -m bench._obs_instructions``: what tracing costs a message, counted in instructions.

Problem: on a noisy 2-core VM an A/A pair of throughput runs reads 0.88-1.17x, so a 5 % cost
cannot be read from timings. Instructions executed are nearly the same run after run.

Approach: a feed and a sink actor on the in-process hub, ``N`` messages published in bursts of 100
(tracing off, or on with the default trace file exporter), run under ``valgrind --tool=callgrind
--cache-sim=yes`` for two ``N``; the difference of the totals over the difference of ``N`` is a
message's cost without the start-up, and over the difference of the producer spans made, less
tracing off's, a sampled message's. Every child runs with ``PYTHONHASHSEED=0``: with random str
hashes each process's dicts collide differently, and a lookup on the per-message path that
collides in one run and not the other moved a message's count by hundreds of instructions
(session 29: "metrics on" read +696 a message, all of it in ``unicodekeys_lookup_unicode``, and
+16 with the seed fixed). Modes: ``off``; ``rejected`` (1 % traced, the sink's budget of forced spans
0: a traced message is checked and turned away, as ~93 % are in ``make bench``); ``recorded``
(every traced message gets a consumer span); ``rejected-noexport`` (as ``rejected``, spans dropped
instead of exported); ``all-rejected`` and ``all-noexport`` (every message sampled, drained every
50 ms: a sampled message's cost with the export's slices full, as at ``make bench``'s rates; at 1 %
under valgrind, ~50x slower, a slice holds a few spans and its fixed cost is spread over those).
Needs valgrind; ~13 minutes for the six pairs.

Session 29 (2026-12-06, commit 373757b: the trace file writes a producer span from its record),
N 3,000 and 9,000, instructions a message (a sampled message): off 19,191; rejected 19,715 (61,683);
recorded 21,362 (241,225); rejected-noexport 19,551 (35,448); all-rejected 69,585 (50,394);
all-noexport 59,229 (40,038). So with full slices a producer span's export is ~10,000 instructions
(with N 1,000 and 3,000: ~42,000 before the change, ~19,000 after), and the sampled send
with the sink's check, ~40,000, is now most of a sampled message's cost; a recorded consumer span
with its export ~180,000. On the in-process hub the sink records a traced message's end-to-end
latency, which untraced ones (no header in-process) skip: a few thousand of the send's figure.

Session 28 (commit a09e365, random hash seeds, N 3,000 and 9,000), instructions a message: off
19,227; rejected 20,151; rejected-noexport 19,479; recorded 21,590. Its lead, "a quarter of the
export is lookups in dicts of str keys", did not hold with the seed fixed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

MODES = ("off", "rejected", "recorded", "rejected-noexport", "all-rejected", "all-noexport")
_EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


async def _run(mode: str, count: int) -> None:
    import actors
    import observability

    from ._wire import quote

    hub = actors.Hub(name="memory")
    done = asyncio.Event()
    got = [0]

    class Feed(actors.Actor):
        name = "bench-feed"
        prefix = ("quote",)

    class Sink(actors.Actor):
        name = "bench-sink"
        queue_size = 2_000_000

        @actors.handler(("quote", "*"))
        def on_quote(self, key: Any, payload: Any) -> None:
            got[0] += 1
            if got[0] >= count:
                done.set()

    feed, sink = Feed(hub), Sink(hub)
    if mode != "off":
        os.environ["TICKBUS_DATA_DIR"] = tempfile.mkdtemp(prefix="tickbus-bench-instructions-")
        observability.enable_tracing(
            "bench",
            actors=[feed.name, sink.name],
            ratio=1.0 if mode.startswith("all-") else 0.01,
            max_origin_spans_per_second=math.inf,
            max_forced_spans_per_second=math.inf if mode == "recorded" else 0.0,
        )
        processor = observability.tracing._processor
        if mode.startswith("all-"):
            processor._interval = 0.05  # slices full (a probe: see the module doc)
        if mode.endswith("-noexport"):
            processor._enqueue = lambda item: None  # a probe: spans dropped
    await feed.start()
    await sink.start()
    base, publish, now = quote(), feed.publish, time.monotonic_ns
    for first in range(0, count, 100):
        for seq in range(first, first + 100):
            publish(("AAPL",), {**base, "s": seq, "t": now()})
        await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 600)
    observability.tracing.flush()
    print(f"sampled {observability.tracing.statistics().producer_spans}", file=sys.stderr, flush=True)
    os._exit(0)  # the counts stop here: no teardown in them


def _count(mode: str, count: int, directory: str) -> tuple[list[int], int]:
    """The callgrind totals (``_EVENTS``) of one run, and the producer spans it made."""
    out = os.path.join(directory, f"callgrind.{mode}.{count}")
    command = ["valgrind", "--tool=callgrind", "--cache-sim=yes", f"--callgrind-out-file={out}"]
    command += [sys.executable, "-m", "bench._obs_instructions", "--child", mode, str(count)]
    environment = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict collisions in every run
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800, env=environment)
    found = re.search(r"Collected : ([\d ]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no totals from callgrind for {mode}: {done.stderr[-400:]}")
    sampled = re.search(r"sampled (\d+)", done.stderr)
    return [int(n) for n in found[1].split()], int(sampled[1]) if sampled else 0


def main(argv: list[str] | None = None) -> int:
    """Count each mode at two message counts; print a message's cost."""
    parser = argparse.ArgumentParser(
        prog="python -m bench._obs_instructions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, nargs=2, default=[3_000, 9_000], help="the two N")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, off first")
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(_run(args.child[0], int(args.child[1])))
        return 0
    low, high = args.messages
    print(f"instructions a message (feed and sink actors, in-process hub; N {low:,}, {high:,})")
    with tempfile.TemporaryDirectory(prefix="tickbus-bench-callgrind-") as directory:
        base = None
        for mode in args.modes.split(","):
            (first, few), (second, many) = _count(mode, low, directory), _count(mode, high, directory)
            costs = ((b - a) / (high - low) for a, b in zip(first, second, strict=True))
            per = dict(zip(_EVENTS, costs, strict=True))
            base = per["Ir"] if base is None else base
            misses = per["D1mr"] + per["D1mw"]
            sampled = ""
            if many > few:  # a sampled message: what the extra spans cost over tracing off
                sampled = f"  {(per['Ir'] - base) * (high - low) / (many - few):9,.0f} a sampled message"
            print(
                f"{mode:<18} Ir {per['Ir']:8,.0f} ({per['Ir'] - base:+7,.0f})  D1 misses {misses:6,.0f}"
                f"  I1 misses {per['I1mr']:6,.0f}{sampled}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
