"""What a benchmarked system provides, and the registry of systems by name.

A system module (``bench._rawzmq``, ``bench._nats``, ``bench._redis``, ``bench._tickbus``) exposes
a module-level ``DRIVER`` object with the :class:`Driver` shape. The harness starts the server in
the parent process and runs publishers and subscribers in spawned child processes, which import
the module by name; so a driver holds no state and ``start_server`` returns a plain, picklable
config dict that the clients receive.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from ._procs import ProcessGroup

Config = dict[str, Any]
OnMessage = Callable[[int, int], None]
"""Called by a subscriber client for every message it receives: ``on_message(seq, sent_ns)``."""

SYSTEMS: dict[str, str] = {
    "tickbus": "bench._tickbus",
    "raw-zmq": "bench._rawzmq",
    "nats": "bench._nats",
    "redis": "bench._redis",
    "actors": "bench._tickbus_actors",
    "actors+obs": "bench._tickbus_obs",
    "tickbus+curve": "bench._tickbus_curve",
    "tickbus+perm": "bench._tickbus_perm",
    "tickbus+pair": "bench._tickbus_pair",
    "actors+pair": "bench._actors_pair",
}
"""Benchmarked systems in report order: name -> module holding ``DRIVER``."""


class PubClient(Protocol):
    """A connected publisher."""

    async def burst(self, first_seq: int, count: int) -> None:
        """Send ``count`` messages numbered from ``first_seq`` as fast as the client accepts them,
        applying the client's own backpressure (flush, pipeline round trip) at the end."""

    async def send_one(self, seq: int) -> None:
        """Send one message and make sure it has left this process (used when pacing)."""

    def stats(self) -> dict[str, int]:
        """Client-side counters worth reporting (e.g. messages refused at send)."""

    async def close(self) -> None:
        """Flush and disconnect."""


class SubClient(Protocol):
    """A connected, subscribed subscriber (messages arrive through the ``OnMessage`` callback)."""

    def stats(self) -> dict[str, int]:
        """Client-side counters worth reporting (e.g. slow-consumer drops)."""

    async def close(self) -> None:
        """Unsubscribe and disconnect."""


class Driver(Protocol):
    """One benchmarked system."""

    name: str

    def unavailable(self) -> str | None:
        """Why this system cannot run here (missing server or client library), or None."""

    def start_server(self, procs: ProcessGroup) -> Config:
        """Start the system's server process(es) in ``procs``, wait until ready, return client config."""

    async def publisher(self, config: Config) -> PubClient:
        """Connect a publisher (in a client process)."""

    async def subscriber(self, config: Config, on_message: OnMessage) -> SubClient:
        """Connect and subscribe to every ``quote`` message (in a client process)."""


def driver(name: str) -> Driver:
    """The driver of system ``name`` (imports its module)."""
    module = importlib.import_module(SYSTEMS[name])
    found: Driver = module.DRIVER
    return found
