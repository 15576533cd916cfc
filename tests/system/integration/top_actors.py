"""Actors for the ``tickbus top`` tests: a feed and a consumer whose name order is the reverse of
their input-rate order, so a change of sort column shows in the rows."""

from __future__ import annotations

from typing import Any

from actors import Actor, Key, every, handler


class Feed(Actor):
    """Publishes ``('tick', 'n')`` a hundred times a second (handles nothing)."""

    name = "feed"

    @every(0.01)
    def tick(self) -> None:
        self.publish(("tick", "n"), {"n": self.statistics().published})


class Sink(Actor):
    """Handles every ``('tick', *)`` and publishes nothing back."""

    name = "zsink"

    @handler(("tick", "*"))
    def on_tick(self, key: Key, payload: Any) -> None:
        self.last = payload
