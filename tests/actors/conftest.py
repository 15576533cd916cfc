"""Fixtures of the client library's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from actors._remote import RemoteHub


@pytest.fixture
async def lonely_hub() -> AsyncIterator[Callable[..., RemoteHub]]:
    """Make a RemoteHub connected to no broker (nobody subscribes: every publish is skipped, and
    counted); keyword arguments override its settings. Closed after the test."""
    made: list[RemoteHub] = []

    def make(**overrides: Any) -> RemoteHub:
        settings: dict[str, Any] = {
            "name": "lonely",
            "hwm": 10,
            "heartbeat_ivl": 1.0,
            "heartbeat_timeout": 3.0,
            "max_payload": 1000,
            "linger": 0.0,
            "context": None,
        }
        made.append(RemoteHub("tcp://127.0.0.1:1", "tcp://127.0.0.1:2", **{**settings, **overrides}))
        return made[-1]

    yield make
    for hub in made:
        await hub.close()
