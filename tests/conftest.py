"""Shared test settings: hypothesis profiles (CI runs the same examples count as a person), and a
private data directory, so the processes tests start write their exports (metrics, traces) into a
temporary directory removed after the session, never into the user's ``~/.local/state/tickbus``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import settings

settings.register_profile("tickbus", max_examples=300, deadline=None)
settings.load_profile("tickbus")

# TICKBUS_DATA_DIR, and XDG_STATE_HOME for children started without TICKBUS_* variables (the demo)
_DATA_VARIABLES = ("TICKBUS_DATA_DIR", "XDG_STATE_HOME")


@pytest.fixture(autouse=True, scope="session")
def _private_data_dir() -> Iterator[str]:
    previous = {name: os.environ.get(name) for name in _DATA_VARIABLES}
    with tempfile.TemporaryDirectory(prefix="tickbus-data-") as path:
        os.environ.update(dict.fromkeys(_DATA_VARIABLES, path))
        try:
            yield path
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    """The running test's id in ``$TICKBUS_TEST_CURRENT`` (``make test`` sets it): a test run killed
    by a signal (a libzmq assertion aborts the process) cannot say it, and ``make test`` then does."""
    path = os.environ.get("TICKBUS_TEST_CURRENT")
    if path:
        with open(path, "w") as current:
            current.write(nodeid)
