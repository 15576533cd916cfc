"""One measurement of one system: server + N subscriber processes + one publisher process.

Sequence: start the server; start the subscribers and wait until each is subscribed; start the
publisher, which sends probes until every subscriber has received one (so no system is measured
before its subscriptions have propagated); say ``go``; collect the publisher's result; collect
each subscriber's result (they stop at the END marker, after 1 s of silence, or when told).
Every wait has a timeout, and every process is ended in ``finally``.

A ``pipeline`` plan also starts the model process (ticks in, signals out) before the subscriber,
which is then the strategy, and collects the model's counters at the end; an ``overload`` plan
tells the publisher to stop its tail probes once the subscriber's result is in.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from . import _stats
from ._procs import ProcessGroup
from ._systems import driver
from ._worker import model_main, publisher_main, subscriber_main


class BenchError(RuntimeError):
    """A measurement could not complete (a process failed, or a timeout passed)."""


@dataclass(frozen=True)
class Plan:
    """What to measure: ``mode`` is ``throughput`` (flat out), ``latency`` (paced at ``rate``,
    spinning at most the last ``spin_us`` before each send), ``pipeline`` (the same, through
    feed -> model -> strategy) or ``overload`` (paced at ``rate``, reported against ``capacity``)."""

    mode: str
    subscribers: int
    warm_s: float
    duration_s: float
    rate: float = 10_000.0
    spin_us: float = 40.0
    drain_s: float = 5.0
    prime_timeout_s: float = 15.0
    capacity: float = 0.0


def measure(system: str, plan: Plan) -> dict[str, Any]:
    """Run ``plan`` against ``system`` and return its figures (see :mod:`bench._stats`)."""
    params = asdict(plan)
    params["max_s"] = plan.prime_timeout_s + plan.warm_s + plan.duration_s + plan.drain_s + 30.0
    with ProcessGroup() as procs:
        config = driver(system).start_server(procs)
        models = []
        if plan.mode == "pipeline":
            models = [procs.client(model_main, system, config, params)[1]]
            _expect(models, "ready", 30.0)
        subs = [procs.client(subscriber_main, system, config, params)[1] for _ in range(plan.subscribers)]
        _expect(subs, "ready", 30.0)
        pub = procs.client(publisher_main, system, config, params)[1]
        _expect([pub], "ready", 30.0)
        _expect(subs, "primed", plan.prime_timeout_s)
        pub.send(("go", None))
        (pub_result,) = _expect([pub], "result", plan.warm_s + plan.duration_s + 30.0)
        sub_results = _collect(subs, plan.drain_s)
        if plan.mode == "overload":
            pub.send(("stop", None))  # ends the tail probes
        for model in models:
            model.send(("stop", None))
        model_results = _expect(models, "result", 15.0)
    if plan.mode == "pipeline":
        return _stats.pipeline(pub_result, sub_results, model_results)
    if plan.mode == "overload":
        return _stats.overload(pub_result, sub_results, plan.rate, plan.capacity)
    summarise = _stats.latency if plan.mode == "latency" else _stats.throughput
    return summarise(pub_result, sub_results)


def _collect(subs: list[Connection], drain_s: float) -> list[dict[str, Any]]:
    """Each subscriber's result: wait ``drain_s`` for them to finish alone, then tell the rest to stop."""
    results: dict[int, dict[str, Any]] = {}
    pending = dict(enumerate(subs))
    deadline = time.monotonic() + drain_s
    stopped = False
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            if stopped:
                raise BenchError(f"{len(pending)} subscriber(s) sent no result after being stopped")
            for conn in pending.values():
                conn.send(("stop", None))
            stopped, deadline = True, time.monotonic() + 10.0
            continue
        for ready in wait(list(pending.values()), left):
            assert isinstance(ready, Connection)
            index = next(i for i, c in pending.items() if c is ready)
            results[index] = _reply(ready, "result")
            del pending[index]
    return [results[i] for i in range(len(subs))]


def _expect(conns: list[Connection], kind: str, timeout: float) -> list[Any]:
    """Wait for a ``kind`` message from every connection, in parallel, within ``timeout`` seconds."""
    found: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(conns):
        waiting = [c for i, c in enumerate(conns) if i not in found]
        ready = wait(waiting, max(0.0, deadline - time.monotonic()))
        if not ready:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {kind!r} from a client process")
        for conn in ready:
            assert isinstance(conn, Connection)
            found[conns.index(conn)] = _reply(conn, kind)
    return [found[i] for i in range(len(conns))]


def _reply(conn: Connection, kind: str) -> Any:
    try:
        got, data = conn.recv()
    except EOFError:
        raise BenchError(f"a client process exited before sending {kind!r}") from None
    if got == "error":
        raise BenchError(f"client process failed:\n{data}")
    if got != kind:
        raise BenchError(f"expected {kind!r} from a client process, got {got!r}")
    return data
