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
