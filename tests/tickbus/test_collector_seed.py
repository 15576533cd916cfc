"""The collector daemon seeds its regression detector from the profile store (no sockets, no Austin)."""

from __future__ import annotations

import random

from tests.observability.profiling.synthetic import (
    SCORE,
    costlier,
    window,
)
from tests.observability.profiling.test_regression import WARMUP, steady


def test_a_restarted_collector_picks_up_the_baseline_from_the_store(tmp_path):
    """The collector seeds the detector with the group's stored windows the first time it sees it."""
    from observability.profiling import ProfileStore
    from tickbus.collector import Profiler, ProfilerConfig

    rng = random.Random(10)
    store = ProfileStore(tmp_path / "profiles.sqlite")
    for w in steady(rng, WARMUP):
        store.add(w)
    profiler = Profiler(ProfilerConfig(data_dir=tmp_path, host="h"), store=store)
    events = []
    profiler.on_alert = events.append
    try:
        for i in range(3):
            profiler._save([window(rng, WARMUP + i, costs=costlier(SCORE, 1.3))])
    finally:
        store.close()
    assert profiler.detector.evaluations == 3  # no warm-up needed: the history came from the store
    assert [e.function for e in events] == [SCORE]
    assert (tmp_path / "alerts.jsonl").read_text().count("\n") == 1


async def test_the_ticker_survives_an_unexpected_error_and_keeps_retaining(tmp_path):
    """An exception in a turn of the ticker (here: retention) is counted and logged; the ticker goes on."""
    import asyncio

    from loguru import logger

    from actors.testing import eventually
    from tickbus.collector import Profiler, ProfilerConfig

    profiler = Profiler(ProfilerConfig(data_dir=tmp_path, host="h", window=0.2, retention_every=0.0))
    calls = []

    def apply_retention(now):
        calls.append(now)
        if len(calls) <= 2:
            raise RuntimeError("bug in retention")
        return real(now)

    real, profiler.store.apply_retention = profiler.store.apply_retention, apply_retention
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="ERROR")
    ticker = asyncio.create_task(profiler._tick())
    try:
        await eventually(lambda: len(calls) >= 4, 10, "retention after two failures")
        assert not ticker.done()
        assert profiler.statistics().internal_errors == 2
        assert (
            len([line for line in lines if "unexpected RuntimeError in its tick path" in line]) == 1
        )  # limited
    finally:
        ticker.cancel()
        logger.remove(sink)
        profiler.store.close()


def test_a_sample_that_raises_costs_that_sample_not_the_sampler(tmp_path):
    """on_sample runs inside the Austin reader: an exception there would end the sampler; it is
    counted and the next sample is taken."""
    import time

    from tickbus.collector import Profiler, ProfilerConfig

    profiler = Profiler(ProfilerConfig(data_dir=tmp_path, host="h"))
    try:
        on_sample = profiler._on_sample(profiler.targets.add_pid(12345, time.time()))
        on_sample(object())  # not an AustinSample: the folder raises
        on_sample(None)
        stats = profiler.statistics()
        assert (stats.samples, stats.internal_errors) == (2, 2)
    finally:
        profiler.store.close()


def _another_users_process():
    """A process running as another uid: started as nobody when we are root, else found in /proc."""
    import os
    import subprocess

    if os.getuid() == 0:
        child = subprocess.Popen(["sleep", "30"], user=65534)
        return child.pid, child
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                    return int(entry), None
            except OSError:
                continue
    return None, None


async def test_an_announcement_cannot_make_the_collector_sample_another_users_process(tmp_path):
    """Under its unit the collector holds CAP_SYS_PTRACE: a hello naming another user's pid (or a
    dead one, or with names that would forge log lines) is refused, counted and logged once."""
    import os

    import pytest
    from loguru import logger

    import actors
    from tickbus.collector import Profiler, ProfilerConfig, own_process

    pid, child = _another_users_process()
    if pid is None:
        pytest.skip("no process of another user to name (not root, and none in /proc)")
    profiler = Profiler(ProfilerConfig(data_dir=tmp_path, host="h"))
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        assert own_process(os.getpid()) is None
        assert "runs as uid" in (own_process(pid) or "")
        key = actors.Key("$actors", "hello", "g")
        for bad in (pid, 2**22 + 7, os.getpid()):
            group = "g\nforged" if bad == os.getpid() else "g"
            profiler._on_announcement(key, {"group": group, "pid": bad, "host": "h", "actors": ["a"]})
        stats = profiler.statistics()
        assert (stats.targets, stats.announcements_refused) == (0, 3)
        assert profiler.targets.refused == {"process": 2, "labels": 1}
        refusals = [line for line in lines if "ignored an announcement" in line]
        assert len(refusals) == 1 and "runs as uid" in refusals[0], lines  # rate-limited by kind
    finally:
        logger.remove(sink)
        profiler.store.close()
        if child is not None:
            child.kill()
            child.wait()


def test_windows_the_store_cannot_take_are_counted_and_logged_once_a_while(tmp_path):
    from loguru import logger

    from observability.profiling import ProfileStore
    from tickbus.collector import Profiler, ProfilerConfig

    rng = random.Random(3)
    store = ProfileStore(tmp_path / "profiles.sqlite")
    profiler = Profiler(ProfilerConfig(data_dir=tmp_path, host="h"), store=store)
    store._db.close()  # every write fails from now on, as on a full disk
    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR")
    try:
        profiler._save([window(rng, i) for i in range(50)])
    finally:
        logger.remove(sink)
    assert profiler.statistics().windows_lost == 50 and profiler.statistics().windows_stored == 0
    assert len(lines) == 1  # one line for the lot (each used to log its own)
