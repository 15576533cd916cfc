"""``tickbus profiler --pid`` without a broker: one INFO line, then real Austin windows in the store."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from actors.testing import eventually
from observability.profiling import ProfileStore
from tests.system.profiling.conftest import start_child, stop_child

pytestmark = pytest.mark.timeout(60)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _profiling_a_child(tmp_path: Path) -> AsyncIterator[tuple[Any, Any, list[str]]]:
    """A collector with ``--pid`` of a CPU-burning child and no broker, its INFO lines, until the
    body is done: ``(profiler, child, lines)``, once the first window is stored."""
    from tickbus.collector import Profiler, ProfilerConfig

    child = start_child()
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    config = ProfilerConfig(
        frontend=f"tcp://127.0.0.1:{_unused_port()}",
        backend=f"tcp://127.0.0.1:{_unused_port()}",
        window=1.0,
        pids=(child.pid,),
        data_dir=tmp_path,
        host="h",
    )
    profiler = Profiler(config)
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(profiler.run(stop))
        await eventually(lambda: profiler.statistics().windows_stored >= 1, 30, "a stored window")
        yield profiler, child, lines
        stop.set()
        await asyncio.wait_for(task, 20)
    finally:
        stop.set()
        logger.remove(sink)
        stop_child(child)


async def test_profiler_with_a_pid_and_no_broker_logs_it_once_and_stores_windows(tmp_path):
    async with _profiling_a_child(tmp_path) as (_profiler, child, lines):
        pass
    unreachable = [line for line in lines if line.startswith("bus not reachable")]
    assert len(unreachable) == 1
    assert f"profiling pid(s) {child.pid} without it" in unreachable[0]
    assert str(tmp_path / "alerts.jsonl") in unreachable[0]
    assert any(line.startswith("regression detection for group pid-") for line in lines)
    with ProfileStore(tmp_path / "profiles.sqlite", create=False) as store:
        windows = store.windows(actor=f"pid-{child.pid}", last=5)
    assert windows and all(w.labels.pid == child.pid for w in windows)
    assert any(s.endswith(":burn_cpu_for_profiler_tests") for w in windows for s in w.stacks)


async def test_a_profile_store_deleted_under_the_profiler_is_opened_anew_and_filled(tmp_path):
    # windows written to a deleted store went nowhere: every `tickbus profile` query saw an empty one
    path = tmp_path / "profiles.sqlite"
    async with _profiling_a_child(tmp_path) as (profiler, child, lines):
        path.unlink()  # an operator's rm, a cleaner
        stored = profiler.statistics().windows_stored
        await eventually(lambda: profiler.store.reopened == 1, 30, "the store opened anew")
        await eventually(lambda: profiler.statistics().windows_stored >= stored + 2, 30, "windows after it")
    assert any("was deleted or replaced: opened anew" in line for line in lines)
    with ProfileStore(path, create=False) as store:
        assert store.windows(actor=f"pid-{child.pid}", last=5)


async def test_profiler_without_pids_still_needs_the_broker(tmp_path):
    from observability import ConnectError
    from tickbus.collector import Profiler, ProfilerConfig

    port = _unused_port()
    config = ProfilerConfig(
        frontend=f"tcp://127.0.0.1:{port}", backend=f"tcp://127.0.0.1:{port}", data_dir=tmp_path, host="h"
    )
    with pytest.raises(ConnectError, match="no broker answered"):
        await Profiler(config).run(asyncio.Event())
