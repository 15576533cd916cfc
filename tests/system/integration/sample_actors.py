"""Actors used by the integration tests through ``tickbus run``."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from actors import Actor, Key, handler


class Echo(Actor):
    """Republishes every ``('ping', *)`` as ``('pong', *)``, slowly enough to leave a queue to drain."""

    name = "echo"

    @handler(("ping", "*"))
    async def on_ping(self, key: Key, payload: Any) -> None:
        await asyncio.sleep(float(os.environ.get("ECHO_DELAY", "0")))
        self.publish(("pong", *key[1:]), payload)


class Failing(Actor):
    """Fails on every message: the runner must exit 1 after max_consecutive_failures."""

    name = "failing"
    max_consecutive_failures = 3

    @handler(("boom",))
    def on_boom(self, key: Key, payload: Any) -> None:
        raise RuntimeError(f"cannot handle {payload!r}")


class NotAnActor:
    """Not a subclass of Actor: loading it must fail with a clear message."""
