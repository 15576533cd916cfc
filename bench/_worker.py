"""Client processes: one publisher or subscriber per spawned process, driven over a pipe.

Pipe protocol (tuples ``(kind, data)``). Subscriber -> parent: ``ready`` once subscribed,
``primed`` at the first probe received, then ``result`` or ``error``. Parent -> subscriber:
``stop``. Publisher -> parent: ``ready`` once connected, then ``result`` or ``error``; it sends
probes (:data:`PRIME`) every 5 ms until the parent says ``go`` (every subscriber primed), then runs
the warm-up and the measured phase, then a few :data:`END` markers. Every wait has a timeout.

Modes (``params["mode"]``): ``throughput`` sends flat out; ``latency`` and ``pipeline`` pace at
``rate`` (the subscriber records latencies); ``overload`` warms up at half the ``capacity`` it is
given, offers ``rate`` in bursts for ``duration_s``, sends its result, then sends a tail probe
(:data:`TAIL_BASE` + i) every 50 ms until the parent says ``stop``: the first probe a subscriber
gets tells it that every earlier message was handled or lost (and counted) by now. In ``pipeline``
mode the subscriber is the pipeline's strategy and a model process (:func:`model_main`: ``ready``,
then ``result`` once told ``stop``) sits between publisher and subscriber (:mod:`bench._pipeline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from . import _pipeline
from ._procs import die_with_parent, fine_timer_slack
from ._recorder import TAIL_BASE, WARM_BASE, Recorder
from ._systems import Config, PubClient, SubClient, driver
from ._wire import END, PRIME

BATCH = 500  # messages per burst between the client's backpressure points in throughput mode
PACED = ("latency", "pipeline")  # modes whose publisher paces at ``rate`` and whose subscriber times
_TAIL_PERIOD = 0.05  # seconds between tail probes
_TAIL_MAX_S = 60.0  # tail probes stop by themselves after this long without a stop
_SLOT_NS = 250_000  # a paced publisher whose gaps are too short to sleep in sends a slot's messages at once
_PACED_OVERRUN = 1.05  # a paced publisher that fell behind stops at this share of its planned time
_IDLE_NS = 1_000_000_000  # a subscriber that has seen nothing for this long after measuring is done
_CLOSE_TIMEOUT = 5.0


def subscriber_main(system: str, config: Config, params: dict[str, Any], conn: Connection) -> None:
    """Process entry: subscribe, record until END / stop / idle / timeout, send the result."""
    _run(conn, _subscribe(system, config, params, conn))


def publisher_main(system: str, config: Config, params: dict[str, Any], conn: Connection) -> None:
    """Process entry: connect, probe until ``go``, warm up, measure, send END and the result."""
    _run(conn, _publish(system, config, params, conn))


def model_main(system: str, config: Config, params: dict[str, Any], conn: Connection) -> None:
    """Process entry: run a pipeline's model (ticks in, signals out) until ``stop``, send its stats."""
    _run(conn, _model(system, config, params, conn))


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
    if result is not None:  # None: the coroutine sent its result itself
        with contextlib.suppress(OSError):
            conn.send(("result", result))


async def _subscribe(system: str, config: Config, params: dict[str, Any], conn: Connection) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    recorder = Recorder(conn, latency=params["mode"] in PACED)
    client: SubClient
    if params["mode"] == "pipeline":
        client = await asyncio.wait_for(_pipeline.strategy(system, config, recorder.on_signal), 15.0)
    else:
        # ``overload``: subscribers keep the product's default queue bounds (see bench._tickbus_actors)
        config = {**config, "overload": params["mode"] == "overload"}
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


async def _model(system: str, config: Config, params: dict[str, Any], conn: Connection) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    client = await asyncio.wait_for(_pipeline.model(system, config), 15.0)
    stop = asyncio.Event()

    def on_command() -> None:
        while conn.poll():
            with contextlib.suppress(EOFError):
                conn.recv()  # stop
            stop.set()
            return

    loop.add_reader(conn.fileno(), on_command)
    conn.send(("ready", None))
    try:
        await asyncio.wait_for(stop.wait(), params["max_s"])
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(conn.fileno())
        stats = client.stats()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), _CLOSE_TIMEOUT)
    return {"client": stats}


async def _publish(
    system: str, config: Config, params: dict[str, Any], conn: Connection
) -> dict[str, Any] | None:
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
        mode, rate, spin_ns = params["mode"], params["rate"], int(params["spin_us"] * 1000)
        if mode in PACED:
            warm = await _paced(client, WARM_BASE, params["warm_s"], rate, spin_ns)
            sent, elapsed = await _paced_timed(client, params["duration_s"], rate, spin_ns)
        elif mode == "overload":  # warm up well below capacity, so that only the measured phase loses
            warm_rate = max(1_000.0, params["capacity"] / 2)
            warm = await _paced_bursts(client, WARM_BASE, params["warm_s"], warm_rate)
            start = time.monotonic()
            sent = await _paced_bursts(client, 0, params["duration_s"], rate)
            elapsed = time.monotonic() - start
        else:
            warm = await _flat_out(client, WARM_BASE, params["warm_s"])
            cpu_ns = time.process_time_ns()
            sent, elapsed = await _flat_out_timed(client, params["duration_s"])
            cpu_ns = time.process_time_ns() - cpu_ns
        result = {
            "sent": sent,
            "warm_sent": warm,
            "elapsed_s": elapsed,
            "send_rate": sent / elapsed if elapsed > 0 else 0.0,
        }
        if mode == "throughput":
            result["cpu_ns"] = cpu_ns
        if mode == "overload":
            conn.send(("result", {**result, "client": client.stats()}))
            await _tail(client, conn)
            return None
        for _ in range(3):
            await client.send_one(END)
            await asyncio.sleep(0.02)
        return {**result, "client": client.stats()}
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


async def _tail(client: PubClient, conn: Connection) -> None:
    """Send tail probes every 50 ms until the parent says ``stop`` (or goes away)."""
    deadline = time.monotonic() + _TAIL_MAX_S
    index = 0
    while not conn.poll() and time.monotonic() < deadline:
        await client.send_one(TAIL_BASE + index)
        index += 1
        await asyncio.sleep(_TAIL_PERIOD)


async def _paced_bursts(client: PubClient, first: int, seconds: float, rate: float) -> int:
    """Offer ``rate`` msgs/s for ``seconds`` through the client's batched path (``burst``, with its
    backpressure): each step sends every message due by now on an absolute schedule, at most
    :data:`BATCH`, then sleeps while none is due. A publisher that cannot keep up sends flat out
    (as in throughput mode) and stops at ``seconds``; returns the number sent."""
    period = 1e9 / rate
    monotonic_ns = time.monotonic_ns
    start = monotonic_ns()
    stop = start + int(seconds * 1e9)
    sent = 0
    while (now := monotonic_ns()) < stop:
        due = min(int((now - start) / period) + 1, int(seconds * rate)) - sent
        if due <= 0:
            await asyncio.sleep(max(0.0, (start + (sent + 1) * period - now) / 1e9))
            continue
        count = min(due, BATCH)
        await client.burst(first + sent, count)
        sent += count
    return sent


async def _paced(client: PubClient, first: int, seconds: float, rate: float, spin_ns: int) -> int:
    """Send at ``rate`` msgs/s on an absolute schedule (a late send never shifts later ones).

    Waits sleep while far from the next send and spin for the last ``spin_ns``: with a 1 us timer
    slack a kernel sleep wakes ~20-30 us late here. The spin share matters on 2 cores: spinning
    ~100 us per 10k/s gap halves raw ZeroMQ's p50 (fewer idle wake-ups along its thread hops) but
    starves nats-server into millisecond p99s; the default 40 us keeps the publisher mostly asleep.
    When the gap between sends is too short to sleep in (40k/s: 25 us), the schedule is kept in
    slots of :data:`_SLOT_NS`, all of a slot's messages sent at its start, each stamped as it is
    sent: sending one by one would spin a whole core, and on 2 cores the publisher, broker and
    subscriber then take turns by scheduler ticks (4 ms p99s for every system, raw ZeroMQ too).
    A publisher that cannot keep up (Redis waits a round trip per send) stops at 1.05 x ``seconds``
    (checked every 64 sends) instead of sending all ``seconds * rate``; returns the number sent.
    """
    period = 1e9 / rate
    count = int(seconds * rate)
    send = client.send_one
    monotonic_ns = time.monotonic_ns
    sleep_above = spin_ns + 20_000
    per_slot = 1 if period > sleep_above else max(1, round(_SLOT_NS / period))
    start = monotonic_ns()
    stop = start + int(seconds * _PACED_OVERRUN * 1e9)
    for i in range(count):
        if i % per_slot == 0:
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
            if monotonic_ns() > stop:
                return i + 1
    return count


async def _paced_timed(client: PubClient, seconds: float, rate: float, spin_ns: int) -> tuple[int, float]:
    start = time.monotonic()
    sent = await _paced(client, 0, seconds, rate, spin_ns)
    return sent, time.monotonic() - start
