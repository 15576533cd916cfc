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
