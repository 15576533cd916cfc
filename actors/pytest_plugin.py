"""pytest fixtures for tickbus users (registered through the ``pytest11`` entry point).

- ``tickbus_broker``: a real broker process on free loopback ports, stopped after the test;
- ``tickbus_hub``: a hub connected to that broker, closed after the test;
- ``tickbus_actors``: a factory ``tickbus_actors("pkg.mod:Class", ...)`` starting a real
  ``tickbus run`` process against that broker, stopped (SIGTERM, then SIGKILL) after the test;
- ``memory_hub``: an in-process :class:`actors.Hub`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

try:  # the hub fixture needs pytest-asyncio; the others work without it
    import pytest_asyncio
except ImportError:  # pragma: no cover - depends on the user's environment
    pytest_asyncio = None  # type: ignore[assignment]

from ._connect import connect
from ._hub import Hub
from ._remote import RemoteHub
from .testing import ActorProcess, BrokerProcess


@pytest.fixture
def tickbus_broker() -> Iterator[BrokerProcess]:
    """A real ``tickbus broker`` on free tcp ports."""
    with BrokerProcess.start() as broker:
        yield broker


async def _tickbus_hub(tickbus_broker: BrokerProcess) -> AsyncIterator[RemoteHub]:
    """A hub connected to :func:`tickbus_broker`."""
    hub = await connect(tickbus_broker.frontend, tickbus_broker.backend, name="test")
    try:
        yield hub
    finally:
        await hub.close()


if pytest_asyncio is not None:
    tickbus_hub = pytest_asyncio.fixture(_tickbus_hub, name="tickbus_hub")


@pytest.fixture
def tickbus_actors(tickbus_broker: BrokerProcess) -> Iterator[Callable[..., ActorProcess]]:
    """Factory starting ``tickbus run`` processes against :func:`tickbus_broker`."""
    started: list[ActorProcess] = []

    def start(*targets: str, **kwargs: object) -> ActorProcess:
        proc = ActorProcess.launch(tickbus_broker, *targets, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.close()


@pytest.fixture
def memory_hub() -> Hub:
    """An in-process hub (no sockets)."""
    return Hub(name="memory")
