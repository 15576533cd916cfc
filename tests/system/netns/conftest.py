"""The several-hosts tier's fixtures: the namespace network (one per test module, skipped loudly where
namespaces cannot be made), the CURVE keys of the hosts, and a :class:`Cluster` with one broker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.netns.hosts import Cluster, NetnsUnavailableError, Network, probe


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    try:
        probe()
    except NetnsUnavailableError as exc:
        pytest.skip(f"SKIPPED LOUDLY: the several-hosts tier cannot run on this machine: {exc}")
    net = Network()
    try:
        net.build()
        yield net
    finally:
        net.close()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """``NAME`` (public) and ``NAME_secret`` files of the broker (one pair for every broker: the
    clients hold one broker key), hosts b and c and the observer; ``allowed``: the clients' keys."""
    made: dict[str, Path] = {}
    for name in ("broker", "host-b", "host-c", "observer"):
        result = subprocess.run(
            [sys.executable, "-m", "tickbus", "keys", "generate", name, "--dir", str(tmp_path / "keys")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        made[name], made[f"{name}_secret"] = (Path(p) for p in result.stdout.split())
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    for name in ("host-b", "host-c", "observer"):
        shutil.copy(made[name], allowed)
    made["allowed"] = allowed
    return made


@pytest.fixture
def cluster(network: Network, keys: dict[str, Path], tmp_path: Path) -> Iterator[Cluster]:
    """One broker, on host a."""
    with Cluster(network, keys, tmp_path) as running:
        yield running
