"""``python -m bench._obs_instructions``: what tracing costs a message, counted in instructions.

Problem: on a noisy 2-core VM an A/A pair of throughput runs reads 0.88-1.17x, so a 5 % cost
cannot be read from timings. Instructions executed are nearly the same run after run.

Approach: a feed and a sink actor on the in-process hub, ``N`` messages published in bursts of 100
(tracing off, or on at 1 % with the default trace file exporter), run under ``valgrind --tool=
callgrind --cache-sim=yes`` for two ``N``; the difference of the totals over the difference of
``N`` is a message's cost without the start-up. Modes: ``off``; ``rejected`` (the sink's budget of
forced spans 0: a traced message is checked and turned away, as ~93 % are in ``make bench``);
``recorded`` (every traced message gets a consumer span); ``rejected-noexport`` (as ``rejected``,
spans dropped instead of exported). Needs valgrind; ~4 minutes for the four pairs on 2 cores.

Session 28 (2026-12-06, commit a09e365), instructions a message: off 19,227; rejected 20,151
(+924: ~86,000 a sampled message); rejected-noexport 19,479 (+252: the send and the receiving
check, ~25,000 a sampled message); recorded 21,590 (+2,363: a consumer span and its export
~150,000). So the export of a producer span, ~63,000 instructions, is most of a sampled message's
cost, against ~12,000-15,000 for making and encoding it warm (``_tracing_cost``). Of the export's
instructions ~25 % are lookups in dicts of str keys (``unicodekeys_lookup_unicode``): attribute and
name lookups of code that runs unspecialised.
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

MODES = ("off", "rejected", "recorded", "rejected-noexport")
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
            ratio=0.01,
            max_origin_spans_per_second=math.inf,
            max_forced_spans_per_second=math.inf if mode == "recorded" else 0.0,
        )
        if mode.endswith("-noexport"):
            observability.tracing._processor._enqueue = lambda item: None  # a probe: spans dropped
    await feed.start()
    await sink.start()
    base, publish, now = quote(), feed.publish, time.monotonic_ns
    for first in range(0, count, 100):
        for seq in range(first, first + 100):
            publish(("AAPL",), {**base, "s": seq, "t": now()})
        await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 600)
    observability.tracing.flush()
    os._exit(0)  # the counts stop here: no teardown in them


def _count(mode: str, count: int, directory: str) -> list[int]:
    out = os.path.join(directory, f"callgrind.{mode}.{count}")
    command = ["valgrind", "--tool=callgrind", "--cache-sim=yes", f"--callgrind-out-file={out}"]
    command += [sys.executable, "-m", "bench._obs_instructions", "--child", mode, str(count)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=1800)
    found = re.search(r"Collected : ([\d ]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no totals from callgrind for {mode}: {done.stderr[-400:]}")
    return [int(n) for n in found[1].split()]


def main(argv: list[str] | None = None) -> int:
    """Count each mode at two message counts; print a message's cost."""
    parser = argparse.ArgumentParser(
        prog="python -m bench._obs_instructions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, nargs=2, default=[20_000, 60_000], help="the two N")
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(_run(args.child[0], int(args.child[1])))
        return 0
    low, high = args.messages
    print(f"instructions a message (feed and sink actors, in-process hub, 1 % traced; N {low:,}, {high:,})")
    with tempfile.TemporaryDirectory(prefix="tickbus-bench-callgrind-") as directory:
        base = None
        for mode in MODES:
            first, second = _count(mode, low, directory), _count(mode, high, directory)
            costs = ((b - a) / (high - low) for a, b in zip(first, second, strict=True))
            per = dict(zip(_EVENTS, costs, strict=True))
            base = per["Ir"] if base is None else base
            misses = per["D1mr"] + per["D1mw"]
            print(
                f"{mode:<18} Ir {per['Ir']:8,.0f} ({per['Ir'] - base:+7,.0f})  D1 misses {misses:6,.0f}"
                f"  I1 misses {per['I1mr']:6,.0f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
