"""Chaos tier fixtures: a broker per transport, a figures recorder shown at the end of the session.

Every chaos test prints one line of figures through ``figures(...)``; they are printed (so ``-s``
shows them live), kept in the session and repeated in a "chaos figures" section of the terminal
summary, so a plain ``pytest -q`` run shows them too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from actors.testing import BrokerProcess

_FIGURES: list[str] = []


@pytest.fixture(params=["tcp", "ipc"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each chaos test runs once over tcp and once over ipc."""
    return str(request.param)


@pytest.fixture
def broker(transport: str) -> Iterator[BrokerProcess]:
    """A real broker on fresh endpoints of the test's transport."""
    with BrokerProcess.start(transport=transport) as running:
        yield running


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``figures("...")`` records one line of a test's measured figures for the session summary."""

    def record(line: str) -> None:
        text = f"{request.node.name}: {line}"
        print(text)
        _FIGURES.append(text)

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("chaos figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)
