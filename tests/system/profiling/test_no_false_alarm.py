"""No false alarm over a clean run of 360 windows, replayed from real sampling.

One real run (real broker, model actor, Austin at 2.5 kHz, 1 s windows) records three phases: the
base rate, the rate doubled, and the rate doubled with ``compute_features``'s work moved into a new
callee (a pure refactor). Each replayed 2 s window merges two recorded windows of its phase drawn at
random, so 120 windows per phase come from ~12 real ones; the detector sees them in order, as the
collector would, under several random draws.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time

import pytest

from actors.testing import BrokerProcess
from observability.profiling import ProfileWindow, RegressionDetector, merge_windows
from tests.system.profiling.live import live_model

pytestmark = pytest.mark.slow

BASE_RATE = 1000  # messages/s: ~35 % of the target's core; doubled (~70 %) it is still below saturation
PHASES = (("base", BASE_RATE, False), ("double", 2 * BASE_RATE, False), ("refactor", 2 * BASE_RATE, True))
ROUNDS = 4
BLOCK = 3
REPLAYED_PER_PHASE = 120


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, list[ProfileWindow]]:
    """Windows of the three phases of one real run, in interleaved blocks.

    Blocks of ``BLOCK`` windows cycle through base, doubled and doubled-and-refactored ``ROUNDS``
    times, so that whatever else the machine does meanwhile (other tests on two shared cores) falls on
    every phase alike; the window holding each switch is left out.
    """
    data_dir = tmp_path_factory.mktemp("recorded")

    async def record() -> dict[str, list[ProfileWindow]]:
        spans: list[tuple[str, float, float]] = []
        with BrokerProcess.start() as broker:
            async with live_model(broker, data_dir, BASE_RATE, window=1.0) as run:
                await run.wait_windows(2, 30)
                for _ in range(ROUNDS):
                    for phase, rate, refactored in PHASES:
                        run.rates.append(rate)
                        run.control("refactor", {"on": refactored})
                        started = time.time()
                        await run.wait_windows(BLOCK + 1, 30)
                        spans.append((phase, started, time.time()))
                windows = list(run.windows)
        phases: dict[str, list[ProfileWindow]] = {p: [] for p, _, _ in PHASES}
        for phase, t0, t1 in spans:
            phases[phase] += [w for w in windows if t0 + 0.5 <= w.start and w.end <= t1 and w.samples >= 50]
        return phases

    return asyncio.run(record())


def replay(recorded: dict[str, list[ProfileWindow]], seed: int) -> list[ProfileWindow]:
    """360 windows of 2 s: each merges two recorded windows of its phase.

    The recorded windows of a phase are used in random order, each once per pass, so an odd window
    (a log line, a GC pause) shows as often as it did in the recording and never twice in a row.
    """
    rng = random.Random(seed)
    out: list[ProfileWindow] = []
    t = 1_000_000.0
    for phase in ("base", "double", "refactor"):
        pool: list[ProfileWindow] = []
        last: ProfileWindow | None = None
        for _ in range(REPLAYED_PER_PHASE):
            pair = []
            for _ in range(2):
                if not pool:
                    pool = list(recorded[phase])
                    rng.shuffle(pool)
                    if (
                        pool[-1] is last
                    ):  # not the same window at the end of one pass and the start of the next
                        pool[0], pool[-1] = pool[-1], pool[0]
                last = pool.pop()
                pair.append(last)
            merged = merge_windows(pair)
            out.append(dataclasses.replace(merged, start=t, end=t + 2.0))
            t += 2.0
    return out


def test_the_recording_has_the_three_phases(recorded):
    assert all(len(recorded[p]) >= ROUNDS * (BLOCK - 1) for p in recorded), {
        p: len(w) for p, w in recorded.items()
    }
    kernel = [w for w in recorded["refactor"] if any(s.endswith(":Model.features_kernel") for s in w.stacks)]
    assert len(kernel) == len(recorded["refactor"])  # the refactor took effect in every window
    assert not any(s.endswith(":Model.features_kernel") for w in recorded["double"] for s in w.stacks)
    handled = {p: sum(w.handled_total for w in ws) / len(ws) for p, ws in recorded.items()}
    for phase, windows in recorded.items():
        shares = {}
        for name in (
            "Model.compute_features",
            "Model.features_kernel",
            "Model.score_signal",
            "Model.on_tick",
        ):
            merged = merge_windows(windows)
            incl = merged.inclusive_counts()
            shares[name] = [
                round(
                    sum(n for f, n in w.inclusive_counts().items() if f.endswith(":" + name)) / w.samples, 3
                )
                for w in windows
            ] + [round(sum(n for f, n in incl.items() if f.endswith(":" + name)) / merged.samples, 3)]
        print(
            f"\n{phase}: {len(windows)} windows, {handled[phase]:.0f} handled and "
            f"{sum(w.samples for w in windows) / len(windows):.0f} samples per window, inclusive shares {shares}"
        )
    assert handled["double"] > 1.6 * handled["base"], handled


# Until 2026-11-24 this was marked xfail: sampled at 2.5 kHz with the target sharing both cores, the
# windows varied 2-3x more than binomially and one CI run of four flagged Model.compute_features at
# the refactor switch. Sampled at 1 kHz with the target alone on its core (see ``live``), the same
# recording varies less than binomially and no seed has raised an alert since (see CHANGELOG).
@pytest.mark.parametrize("seed", range(5))
def test_no_alert_over_360_replayed_windows_with_a_load_change_and_a_refactor(recorded, seed):
    detector = RegressionDetector()
    alerts = [(i, e) for i, window in enumerate(replay(recorded, seed)) for e in detector.observe(window)]
    assert detector.evaluations >= 300
    assert alerts == [], [
        (i, a.function.rpartition(":")[2], a.kind, a.baseline_share, a.current_share) for i, a in alerts
    ]
