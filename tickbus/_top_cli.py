"""``tickbus top``: a live terminal view of the whole bus, from any host that can reach the broker.

It connects like any hub (``--frontend``/``--backend``, ``$TICKBUS_FRONTEND``/``$TICKBUS_BACKEND``,
CURVE from ``$TICKBUS_CURVE_*``), publishes nothing, and subscribes only to what the bus already
says about itself: ``('$broker', 'stats')``, ``('$actors', *)``, ``('$bus', 'slow', *)`` and
``('$alerts', 'profile', *)``. The rows come from :mod:`._top_model`, the drawing from
:mod:`._top_view`.

Keys (on a terminal): ``s`` sorts the actors by the next column, ``q`` quits. ``--once`` collects for
``--wait`` seconds and prints one frame as plain text instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import Any

MIN_WAIT = 1.2  # statistics come every second: a shorter window may see none


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``top`` subcommand to the ``tickbus`` parser."""
    from ._top_model import SORT_KEYS

    top = subparsers.add_parser(
        "top",
        help="live view of the bus: groups, actors, rates, latencies, drops, slow consumers, alerts",
        description="Watch a running bus from the statistics the broker and the groups publish every second. "
        "Keys: s cycles the sort column of the actors, q quits.",
    )
    top.add_argument(
        "--frontend", help="broker frontend URL (default $TICKBUS_FRONTEND or tcp://127.0.0.1:5550)"
    )
    top.add_argument(
        "--backend", help="broker backend URL (default $TICKBUS_BACKEND or tcp://127.0.0.1:5551)"
    )
    top.add_argument(
        "--once", action="store_true", help="collect for --wait seconds, print one plain-text frame, exit"
    )
    top.add_argument(
        "--wait",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help=f"with --once: seconds to collect statistics (default 3, at least {MIN_WAIT})",
    )
    top.add_argument(
        "--sort", choices=SORT_KEYS, default=SORT_KEYS[0], help="initial sort column of the actors"
    )
    top.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up when the broker is not reachable within this time (default 10)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``tickbus top``; :class:`ConnectError` (a TickbusError) when the broker is unreachable."""
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    import actors
    from broker import ACTORS, ALERTS_PROFILE, BROKER_STATS, SLOW

    from ._top_model import BusModel

    model = BusModel()
    # publishes nothing, so it sends no heartbeats: watching the bus does not add a publisher to it
    hub = await actors.connect(
        args.frontend, args.backend, name="top", wait=args.connect_timeout, idle_heartbeat=0
    )
    try:

        def on_message(key: actors.Key, payload: Any) -> None:
            model.on_message(key, payload, time.monotonic())

        patterns = {
            actors.Key(*BROKER_STATS),
            actors.Key(ACTORS, "*"),
            actors.Key(*SLOW, "*"),
            actors.Key(*ALERTS_PROFILE, "*"),
        }
        actors.Subscriber(hub, "top").add_sync_listener(patterns, on_message)
        if args.once:
            return await _once(model, args)
        return await _live(model, args.sort)
    finally:
        await hub.close()


async def _once(model: Any, args: argparse.Namespace) -> int:
    from ._top_view import plain_text

    await asyncio.sleep(max(args.wait, MIN_WAIT))  # the collection window the user asked for
    model.refresh(time.monotonic())
    if not model.messages:
        print(
            f"tickbus top: no statistics heard within {max(args.wait, MIN_WAIT)} s; is a broker running at "
            "--frontend/--backend ($TICKBUS_FRONTEND/$TICKBUS_BACKEND)?",
            file=sys.stderr,
        )
        return 1
    try:
        frame = plain_text(model, args.sort)
    except Exception as exc:  # one clear line, not a traceback, whatever a peer sent
        from observability import printable

        print(
            f"tickbus top: cannot draw the frame: {printable(f'{type(exc).__name__}: {exc}')}",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(frame)
    sys.stdout.flush()
    return 0


@contextlib.contextmanager
def _keys_from(fd: int) -> Iterator[bool]:
    """Single keys from the terminal ``fd`` without echo (cbreak: Ctrl-C still interrupts); yields
    False, changing nothing, when ``fd`` is not a terminal."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _live(model: Any, sort: str) -> int:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from ._top_model import SORT_KEYS
    from ._top_view import Frames

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    redraw = asyncio.Event()
    state = {"sort": sort}
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fd = sys.stdin.fileno()

    def on_key() -> None:
        data = os.read(fd, 64)
        if not data:  # end of input: keys are over, the view goes on until a signal
            loop.remove_reader(fd)
            return
        for char in data.decode(errors="replace").lower():
            if char == "q":
                stop.set()
            elif char == "s":
                state["sort"] = SORT_KEYS[(SORT_KEYS.index(state["sort"]) + 1) % len(SORT_KEYS)]
                redraw.set()

    with _keys_from(fd) as keys:
        if keys:
            loop.add_reader(fd, on_key)
        try:
            # auto_refresh off: every draw happens here, in the loop that owns the model
            with Live(console=Console(), screen=True, auto_refresh=False, transient=True) as live:
                frames = Frames()  # a frame that fails is counted and shown; the previous one stays

                def show(frame: RenderableType) -> None:
                    live.update(frame, refresh=True)

                while not stop.is_set():
                    model.refresh(time.monotonic())
                    frames.draw(model, state["sort"], show, rows=live.console.size.height)
                    redraw.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(_first(stop, redraw), timeout=1.0)
        finally:
            if keys:
                loop.remove_reader(fd)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    return 0


async def _first(*events: asyncio.Event) -> None:
    """Return when any of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
