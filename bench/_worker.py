"""Client processes: one publisher or subscriber per spawned process, driven over a pipe.

Pipe protocol (tuples ``(kind, data)``). Subscriber -> parent: ``ready`` once subscribed,
``primed`` at the first probe received, then ``result`` or ``error``. Parent -> subscriber:
``stop``. Publisher -> parent: ``ready`` once connected, then ``result`` or ``error``; it sends
probes (:data:`PRIME`) every 5 ms until the parent says ``go`` (every subscriber primed), then runs
the warm-up and the measured phase, then a few :data:`END` markers. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from ._procs import die_with_parent, fine_timer_slack
from ._recorder import Recorder
from ._systems import Config, PubClient, driver
from ._wire import END, PRIME

BATCH = 500  # messages per burst between the client's backpressure points in throughput mode
WARM_BASE = -(1 << 40)  # warm-up messages are numbered from here: negative, never a marker
_IDLE_NS = 1_000_000_000  # a subscriber that has seen nothing for this long after measuring is done
_CLOSE_TIMEOUT = 5.0


def subscriber_main(system: str, config: Config, params: dict[str, Any], conn: Connection) -> None:
    """Process entry: subscribe, record until END / stop / idle / timeout, send the result."""
    _run(conn, _subscribe(system, config, params, conn))


def publisher_main(system: str, config: Config, params: dict[str, Any], conn: Connection) -> None:
    """Process entry: connect, probe until ``go``, warm up, measure, send END and the result."""
    _run(conn, _publish(system, config, params, conn))


def _run(conn: Connection, main: Any) -> None:
    # Clients log only errors: a warning per overflow or slow callback would flood the bench output
    # (every loss is still counted in the statistics the worker reports).
    from observability import configure_logging

    configure_logging("bench", level="ERROR", json=False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends us
    die_with_parent()
    fine_timer_slack()
    try:
        result = asyncio.run(main)
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc(limit=8)))
        raise SystemExit(1) from None
    with contextlib.suppress(OSError):
        conn.send(("result", result))


async def _subscribe(system: str, config: Config, params: dict[str, Any], conn: Connection) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    recorder = Recorder(conn, latency=params["mode"] == "latency")
    client = await asyncio.wait_for(driver(system).subscriber(config, recorder.on_message), 15.0)

    def on_command() -> None:
        while conn.poll():
            try:
                kind, _ = conn.recv()
            except EOFError:
                recorder.finish("parent gone")
                return
            if kind == "stop":
                recorder.finish("stopped by parent")

    async def watch_idle() -> None:
        while not recorder.finished.is_set():
            await asyncio.sleep(0.2)
            if recorder.idle_ns() > _IDLE_NS:
                recorder.finish("idle")

    loop.add_reader(conn.fileno(), on_command)
    watcher = loop.create_task(watch_idle())
    conn.send(("ready", None))
    try:
        await asyncio.wait_for(recorder.finished.wait(), params["max_s"])
    except TimeoutError:
        recorder.finish("timeout")
    finally:
        loop.remove_reader(conn.fileno())
        watcher.cancel()
        stats = client.stats()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), _CLOSE_TIMEOUT)
    return {**recorder.result(), "client": stats}


async def _publish(system: str, config: Config, params: dict[str, Any], conn: Connection) -> dict[str, Any]:
    client = await asyncio.wait_for(driver(system).publisher(config), 15.0)
    try:
        conn.send(("ready", None))
        deadline = time.monotonic() + params["prime_timeout_s"]
        while not conn.poll():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no go from the parent within {params['prime_timeout_s']}s")
            await client.send_one(PRIME)
            await asyncio.sleep(0.005)
        conn.recv()  # go
        if params["mode"] == "latency":
            rate, spin_ns = params["rate"], int(params["spin_us"] * 1000)
            warm = await _paced(client, WARM_BASE, params["warm_s"], rate, spin_ns)
            sent, elapsed = await _paced_timed(client, params["duration_s"], rate, spin_ns)
        else:
            warm = await _flat_out(client, WARM_BASE, params["warm_s"])
            sent, elapsed = await _flat_out_timed(client, params["duration_s"])
        for _ in range(3):
            await client.send_one(END)
            await asyncio.sleep(0.02)
        return {
            "sent": sent,
            "warm_sent": warm,
            "elapsed_s": elapsed,
            "send_rate": sent / elapsed if elapsed > 0 else 0.0,
            "client": client.stats(),
        }
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), _CLOSE_TIMEOUT)


async def _flat_out(client: PubClient, first: int, seconds: float) -> int:
    seq, end = first, time.monotonic() + seconds
    while time.monotonic() < end:
        await client.burst(seq, BATCH)
        seq += BATCH
    return seq - first


async def _flat_out_timed(client: PubClient, seconds: float) -> tuple[int, float]:
    start = time.monotonic()
    sent = await _flat_out(client, 0, seconds)
    return sent, time.monotonic() - start


async def _paced(client: PubClient, first: int, seconds: float, rate: float, spin_ns: int) -> int:
    """Send at ``rate`` msgs/s on an absolute schedule (a late send never shifts later ones).

    Waits sleep while far from the next send and spin for the last ``spin_ns``: with a 1 us timer
    slack a kernel sleep wakes ~20-30 us late here. The spin share matters on 2 cores: spinning
    ~100 us per 10k/s gap halves raw ZeroMQ's p50 (fewer idle wake-ups along its thread hops) but
    starves nats-server into millisecond p99s; the default 40 us keeps the publisher mostly asleep.
    """
    period = 1e9 / rate
    count = int(seconds * rate)
    send = client.send_one
    monotonic_ns = time.monotonic_ns
    sleep_above = spin_ns + 20_000
    start = monotonic_ns()
    for i in range(count):
        target = start + int(i * period)
        while (left := target - monotonic_ns()) > 0:
            if left > 1_500_000:  # far: let the event loop run (the client's I/O, the pipe)
                await asyncio.sleep((left - 1_000_000) / 1e9)
            elif left > sleep_above:  # near: a blocking sub-ms sleep that stops short of the target
                time.sleep((left - spin_ns) / 1e9)  # noqa: ASYNC251 -- sub-ms, on purpose
            # else: spin
        await send(first + i)
        if i % 64 == 63:
            await asyncio.sleep(0)  # loop housekeeping even when every gap is slept or spun
    return count


async def _paced_timed(client: PubClient, seconds: float, rate: float, spin_ns: int) -> tuple[int, float]:
    start = time.monotonic()
    sent = await _paced(client, 0, seconds, rate, spin_ns)
    return sent, time.monotonic() - start
