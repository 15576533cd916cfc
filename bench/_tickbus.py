"""tickbus: THE PLUGGABLE SLOT for the system under test. The lead adjusts this file to the API.

Wiring (each piece is one small function below, so an API change is a local edit):

- :meth:`_Driver.unavailable` -- imports ``actors`` and checks that ``python -m tickbus broker`` exists;
  any ImportError or missing name makes the harness report tickbus as ``n/a`` with the reason.
- :meth:`_Driver.start_server` -- ``sys.executable -m broker --frontend tcp://127.0.0.1:P1
  --backend tcp://127.0.0.1:P2``, ready when it prints a line starting ``tickbus broker ready``.
- :func:`_connect` -- ``hub = await actors.connect(frontend=..., backend=...)``.
- :class:`_Pub` -- ``actors.Publisher(hub, ("quote",)).publish(("AAPL",), payload)``; the payload is
  the same quote dict as the other systems plus ``"s"`` (sequence) and ``"t"`` (send
  ``monotonic_ns``), because a sync listener sees only ``(key, payload)``. tickbus adds its own
  envelope header (sequence, send times) on top, as it always does.
- :meth:`_Driver.subscriber` -- ``actors.Subscriber(hub, "bench").add_sync_listener(
  actors.Key("quote", "*"), callback)`` with ``callback(key, payload)``.
- ``close`` -- ``await hub.close()``. :func:`_hub_stats` reports ``hub.statistics()`` counters.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
import time
from typing import Any

from ._procs import ProcessGroup, free_port, wait_line
from ._systems import Config, OnMessage
from ._wire import quote

READY_LINE = b"tickbus broker ready"
_REPORTED = (
    "redundant",
    "publish_dropped",
    "publish_skipped",
    "gaps",
    "duplicates",
    "reordered",
    "malformed",
    "unmatched",
    "listener_errors",
    "disconnects",
)


async def _connect(config: Config, name: str) -> Any:
    import actors

    # The rows measure handling, not shedding: a subscriber behind a flat-out publisher works
    # through its queues (max_lag=inf), as every hub did before 2026-12-07. The overload row keeps
    # the product's default: behind for 1 s, a hub discards what waited (counted as gaps).
    max_lag = None if config.get("overload") else math.inf
    return await actors.connect(
        frontend=config["frontend"], backend=config["backend"], name=name, wait=10.0, max_lag=max_lag
    )


def _hub_stats(hub: Any) -> dict[str, int]:
    """The hub's loss and anomaly counters (whatever of them its statistics() has)."""
    try:
        stats = hub.statistics()
    except Exception:
        return {}
    return {name: int(getattr(stats, name)) for name in _REPORTED if hasattr(stats, name)}


class _Pub:
    def __init__(self, hub: Any) -> None:
        import actors

        self._hub = hub
        self._publish = actors.Publisher(hub, ("quote",)).publish
        self._key = ("AAPL",)
        self._quote = quote()

    async def burst(self, first_seq: int, count: int) -> None:
        publish, key, base, now = self._publish, self._key, self._quote, time.monotonic_ns
        for seq in range(first_seq, first_seq + count):
            publish(key, {**base, "s": seq, "t": now()})
        await asyncio.sleep(0)  # the hub learns subscriptions and connection events in the loop

    async def send_one(self, seq: int) -> None:
        self._publish(self._key, {**self._quote, "s": seq, "t": time.monotonic_ns()})

    def stats(self) -> dict[str, int]:
        return _hub_stats(self._hub)

    async def close(self) -> None:
        await self._hub.close()


class _Sub:
    def __init__(self, hub: Any) -> None:
        self._hub = hub

    def stats(self) -> dict[str, int]:
        return _hub_stats(self._hub)

    async def close(self) -> None:
        await self._hub.close()


class _Driver:
    name = "tickbus"
    brokers = 1  # 2: a broker pair, every message through both (``tickbus+pair``, ``actors+pair``)

    def unavailable(self) -> str | None:
        try:
            import actors

            for name in ("connect", "Publisher", "Subscriber", "Key"):
                getattr(actors, name)
            if importlib.util.find_spec("tickbus.__main__") is None:
                return "no tickbus command (python -m tickbus broker)"
        except (ImportError, AttributeError) as exc:
            return f"tickbus API not importable: {exc}"
        return None

    def start_server(self, procs: ProcessGroup) -> Config:
        frontends, backends = [], []
        for _ in range(self.brokers):
            frontend = f"tcp://127.0.0.1:{free_port()}"
            backend = f"tcp://127.0.0.1:{free_port()}"
            argv = [sys.executable, "-m", "tickbus", "broker", "--frontend", frontend, "--backend", backend]
            broker = procs.server(argv)
            wait_line(broker, READY_LINE, 15.0)
            frontends.append(frontend)
            backends.append(backend)
        if self.brokers == 1:
            return {"frontend": frontends[0], "backend": backends[0]}
        return {"frontend": frontends, "backend": backends}

    async def publisher(self, config: Config) -> _Pub:
        return _Pub(await _connect(config, "bench-pub"))

    async def subscriber(self, config: Config, on_message: OnMessage) -> _Sub:
        import actors

        hub = await _connect(config, "bench-sub")

        def callback(key: Any, payload: Any) -> None:
            on_message(payload["s"], payload["t"])

        actors.Subscriber(hub, "bench").add_sync_listener(actors.Key("quote", "*"), callback)
        return _Sub(hub)


DRIVER = _Driver()


class _PairDriver(_Driver):
    name = "tickbus+pair"
    brokers = 2


PAIR_DRIVER = _PairDriver()
