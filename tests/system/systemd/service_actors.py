"""Actors run under systemd in these tests (on the host with a notify socket, and in the container).

``Ticker`` publishes ``('tick', 'n')`` every 10 ms. ``Sink`` counts ticks and, when the file named by
its ``block_file`` config exists, deletes it and blocks its event loop (``time.sleep``) for the
seconds the file holds (default an hour): the hang the watchdog must catch. A file, not a message,
so a test can trigger it from outside the container's network.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from loguru import logger

from actors import Actor, Key, every, handler


class Ticker(Actor):
    """Publishes a counter on ``('tick', 'n')`` every 10 ms."""

    name = "ticker"

    async def on_start(self) -> None:
        self.sent = 0

    @every(0.01)
    def tick(self) -> None:
        self.sent += 1
        self.publish(("tick", "n"), self.sent)


class Sink(Actor):
    """Counts ticks; blocks its loop when its ``block_file`` appears (see the module docstring)."""

    name = "sink"

    async def on_start(self) -> None:
        self.received = 0
        self.block_file = Path(self.config.get("block_file", "/var/lib/tickbus/block-sink"))

    @handler(("tick", "*"))
    def on_tick(self, key: Key, payload: Any) -> None:
        self.received += 1

    @every(0.05)
    def check_block(self) -> None:
        if not self.block_file.exists():
            return
        text = self.block_file.read_text().strip()
        self.block_file.unlink()  # once: the restarted process must not block again
        seconds = float(text) if text else 3600.0
        logger.warning("sink blocks its event loop for {} s on purpose (test)", seconds)
        time.sleep(seconds)  # the hang: nothing else on this loop runs, the watchdog feed included
