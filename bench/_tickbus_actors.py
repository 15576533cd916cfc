"""tickbus through the Actor API, with observability off (``actors``) or fully on (``actors+obs``).

The ``tickbus`` system measures the bare bus (a sync listener); these two run the same traffic
through ``Actor.publish`` and an ``@handler``, the path where observability hooks in. ``actors+obs``
turns on in both client processes what ``tickbus run`` turns on: metrics (OTLP JSON file, 1 s
export), loop-lag and slow-callback probes, and tracing with 1 % of origins sampled (OTLP JSON lines
exported on the loop), without ``tickbus run``'s budget of 100 traces started a second: at 230k
msgs/s that is 2,300 sampled publishes a second, 1 % as issue 12 asks. Comparing the two in one
run is the cost of observability.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ._systems import Config, OnMessage
from ._tickbus import _connect, _Driver, _hub_stats
from ._wire import quote

TRACE_RATIO = 0.01


def _observe(hub: Any, service: str, actor: Any, enabled: bool) -> tempfile.TemporaryDirectory[str] | None:
    if not enabled:
        return None
    import observability

    tmp = tempfile.TemporaryDirectory(prefix="tickbus-bench-obs-")
    observability.metrics.enable(
        service, actors=[actor], hubs=[hub], otlp_file=Path(tmp.name, "metrics.jsonl"), interval=1.0
    )
    observability.loop_lag.enable()
    observability.slow_callbacks.enable()
    os.environ["TICKBUS_DATA_DIR"] = tmp.name  # the default span exporter writes under it
    observability.enable_tracing(  # 1 % of every origin, as issue 12 asks: no budget of traces a second
        service,
        actors=[actor.name],
        sampler="parentbased_traceidratio",
        ratio=TRACE_RATIO,
        max_origin_spans_per_second=math.inf,
    )
    return tmp


def _unobserve(tmp: tempfile.TemporaryDirectory[str] | None) -> None:
    if tmp is None:
        return
    import observability

    observability.disable_tracing()
    observability.metrics.disable()
    observability.loop_lag.disable()
    observability.slow_callbacks.disable()
    tmp.cleanup()


def _actor_stats(actor: Any) -> dict[str, int]:
    """The actor's mailbox counters: ``actor_dropped`` are messages its full mailbox shed."""
    stats = actor.statistics()
    return {"actor_handled": stats.handled, "actor_dropped": stats.dropped, "actor_queued": stats.queued}


class _Client:
    """A connected hub with one started actor (and observability, when on): stats and teardown."""

    def __init__(self, hub: Any, actor: Any, tmp: tempfile.TemporaryDirectory[str] | None) -> None:
        self._hub, self._actor, self._tmp = hub, actor, tmp

    def stats(self) -> dict[str, int]:
        return {**_hub_stats(self._hub), **_actor_stats(self._actor)}

    async def close(self) -> None:
        await self._actor.stop(1.0)
        _unobserve(self._tmp)
        await self._hub.close()


class _Pub(_Client):
    def __init__(self, hub: Any, actor: Any, tmp: tempfile.TemporaryDirectory[str] | None) -> None:
        super().__init__(hub, actor, tmp)
        self._quote = quote()

    async def burst(self, first_seq: int, count: int) -> None:
        publish, base, now = self._actor.publish, self._quote, time.monotonic_ns
        for seq in range(first_seq, first_seq + count):
            publish(("AAPL",), {**base, "s": seq, "t": now()})
        await asyncio.sleep(0)

    async def send_one(self, seq: int) -> None:
        self._actor.publish(("AAPL",), {**self._quote, "s": seq, "t": time.monotonic_ns()})


class _ActorDriver(_Driver):
    def __init__(self, name: str, observed: bool, brokers: int = 1) -> None:
        self.name = name
        self._observed = observed
        self.brokers = brokers

    async def publisher(self, config: Config) -> _Pub:  # type: ignore[override]
        import actors

        class Feed(actors.Actor):
            name = "bench-feed"
            prefix = ("quote",)

        hub = await _connect(config, "bench-pub")
        feed = Feed(hub)
        tmp = _observe(hub, "bench-feed", feed, self._observed)
        await feed.start()
        return _Pub(hub, feed, tmp)

    async def subscriber(self, config: Config, on_message: OnMessage) -> _Client:  # type: ignore[override]
        import actors

        class Sink(actors.Actor):
            name = "bench-sink"
            # Never drop in the mailbox: measure handling, not shedding. The overload row keeps the
            # product's default bound (drop_oldest, counted in statistics().dropped).
            queue_size = actors.Actor.queue_size if config.get("overload") else 2_000_000

            @actors.handler(("quote", "*"))
            def on_quote(self, key: Any, payload: Any) -> None:
                on_message(payload["s"], payload["t"])

        hub = await _connect(config, "bench-sub")
        sink = Sink(hub)
        tmp = _observe(hub, "bench-sink", sink, self._observed)
        await sink.start()
        return _Client(hub, sink, tmp)


DRIVER = _ActorDriver("actors", observed=False)
OBSERVED_DRIVER = _ActorDriver("actors+obs", observed=True)
PAIR_DRIVER = _ActorDriver("actors+pair", observed=False, brokers=2)
