"""The regression detector on synthetic windows (no sockets, no processes): what it flags and what not."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observability.profiling._regression import (
    DetectionConfig,
    RegressionDetector,
    benjamini_hochberg,
    dispersion,
    rise_z,
)
from tests.observability.profiling.synthetic import (
    FEATURES,
    KERNEL,
    SCORE,
    STACKS,
    costlier,
    loaded,
    refactored,
    risen,
    window,
    with_share,
)

WARMUP = 20


def run(detector: RegressionDetector, windows) -> list[tuple[int, object]]:
    return [(i, event) for i, w in enumerate(windows) for event in detector.observe(w)]


def steady(rng: random.Random, count: int, start: int = 0, **kwargs) -> list:
    return [window(rng, start + i, **kwargs) for i in range(count)]


@pytest.mark.parametrize(("factor", "within"), [(1.2, 2), (1.1, 5)])
def test_a_costlier_function_is_flagged_within_a_few_windows(factor, within):
    rng = random.Random(1)
    slow = costlier(SCORE, factor)
    windows = steady(rng, WARMUP) + [window(rng, WARMUP + i, costs=slow) for i in range(10)]
    events = run(RegressionDetector(), windows)
    assert events, "not flagged"
    index, alert = events[0]
    assert index - WARMUP + 1 <= within
    assert alert.state == "active" and alert.function == SCORE and alert.kind == "self"
    assert alert.group == "model" and alert.actors == ("model",) and alert.version == "1.0"
    assert alert.relative_change > 0.05 and alert.confidence > 0.999
    assert [e.function for _, e in events] == [SCORE]  # one alert per regression: no ancestors


@pytest.mark.parametrize("seed", range(3))
def test_no_alert_over_300_clean_windows(seed):
    detector = RegressionDetector()
    assert run(detector, steady(random.Random(seed), 320)) == []
    assert detector.evaluations >= 300


# The default collector's case (issue 13): 20 s windows at 100 Hz of an actor busy a quarter of the
# time (~550 samples), a function of 35 % whose share also wanders from window to window (sd 2 points,
# about as much again as sampling alone: phi ~2) made 25 % costlier, to be flagged within 10 minutes.
DEFAULT_SAMPLES, SHARE, WANDER = 550, 0.35, 0.02


def test_a_25pct_slowdown_at_default_settings_is_flagged_within_10_minutes_in_most_seeds():
    within, flagged, seeds = 30, [], 40
    for seed in range(seeds):
        rng = random.Random(100 + seed)
        before = [with_share(rng, i, SCORE, SHARE, sd=WANDER) for i in range(40)]
        after = [with_share(rng, 40 + i, SCORE, risen(SHARE, 1.25), sd=WANDER) for i in range(within)]
        events = run(RegressionDetector(), before + after)
        assert all(i >= 40 and e.function == SCORE for i, e in events), events  # nothing else, never early
        if events:
            flagged.append(events[0][0] - 40 + 1)
    # 197 of 200 seeds when this was written (median 7 windows); pools of at most 5 windows: 107 of 200
    assert len(flagged) >= 0.9 * seeds, (len(flagged), flagged)
    assert sorted(flagged)[len(flagged) // 2] <= 12, flagged


@pytest.mark.parametrize("seed", range(4))
def test_no_alert_over_300_clean_windows_at_default_settings(seed):
    rng = random.Random(seed)
    detector = RegressionDetector()
    assert run(detector, [with_share(rng, i, SCORE, SHARE, sd=WANDER) for i in range(310)]) == []
    assert detector.evaluations >= 300


def test_one_hot_window_is_a_transient():
    rng = random.Random(2)
    windows = steady(rng, WARMUP) + [window(rng, WARMUP, costs=costlier(SCORE, 2.0))]
    windows += steady(rng, 10, start=WARMUP + 1)
    assert run(RegressionDetector(), windows) == []


def test_moving_work_into_a_new_callee_is_a_refactor_not_a_regression():
    rng = random.Random(3)
    windows = steady(rng, WARMUP) + [window(rng, WARMUP + i, costs=refactored()) for i in range(40)]
    # the moved work is not flagged, where it went nor where it came from; other functions may show
    # at the false-alarm rate (alpha per evaluation, tested on clean windows above): with this seed
    # the 8 windows after the warm-up hold dispatch at 85.9 % against a baseline of 84.7 % (both 85 %
    # in truth), flagged at q 2.6e-4
    moved = {FEATURES, KERNEL}
    assert [e.function for _, e in run(RegressionDetector(), windows) if e.function in moved] == []
    # ...but the same new callee costing extra work on top is a regression
    extra = {**STACKS, f"{STACKS and next(s for s in STACKS if s.endswith(FEATURES))};{KERNEL}": 15.0}
    rng = random.Random(4)
    windows = steady(rng, WARMUP) + [window(rng, WARMUP + i, costs=extra) for i in range(5)]
    assert [e.function for _, e in run(RegressionDetector(), windows)] == [KERNEL]


def test_doubling_the_message_rate_is_not_a_regression():
    rng = random.Random(5)
    windows = steady(rng, WARMUP) + [
        window(rng, WARMUP + i, costs=loaded(2.0), handled=4000, samples=5000) for i in range(60)
    ]
    detector = RegressionDetector()
    assert run(detector, windows) == []
    assert detector.evaluations > 30  # it resumed at the new load


def test_an_alert_lasts_until_the_cost_returns_then_resolves_once():
    rng = random.Random(6)
    slow = costlier(SCORE, 1.3)
    windows = steady(rng, WARMUP) + [window(rng, WARMUP + i, costs=slow) for i in range(20)]
    windows += steady(rng, 30, start=WARMUP + 20)
    events = run(RegressionDetector(), windows)
    # ...and once it is fixed, the others' shares coming back up are no regression either
    assert [(e.state, e.function) for _, e in events] == [("active", SCORE), ("resolved", SCORE)]
    assert events[1][0] >= WARMUP + 20
    assert events[1][1].current_share < events[0][1].current_share


def test_after_a_deploy_the_previous_version_is_the_baseline():
    rng = random.Random(7)
    windows = steady(rng, WARMUP, version="1.0")
    windows += [window(rng, WARMUP + i, costs=costlier(FEATURES, 1.25), version="1.1") for i in range(4)]
    events = run(RegressionDetector(), windows)
    assert [(e.function, e.version, e.baseline_version) for _, e in events] == [(FEATURES, "1.1", "1.0")]


def test_windows_without_enough_samples_are_ignored_and_odd_windows_do_not_crash():
    rng = random.Random(8)
    detector = RegressionDetector()
    windows = steady(rng, 30)
    windows[10] = window(rng, 10, samples=5)
    windows[11] = window(rng, 11, costs={"<no Python frames>": 1.0})
    windows[12] = window(rng, 12, handled=0)
    assert run(detector, windows) == []


def test_config_is_checked():
    with pytest.raises(ValueError, match="pools"):
        DetectionConfig(pools=(5, 3))
    with pytest.raises(ValueError, match="pools"):
        DetectionConfig(pools=())
    with pytest.raises(ValueError, match="alpha"):
        DetectionConfig(alpha=1.5)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=40))
def test_benjamini_hochberg_adjusts_upwards_and_keeps_the_order(p_values):
    q = benjamini_hochberg(p_values)
    assert all(p <= qv + 1e-12 and qv <= 1.0 for p, qv in zip(p_values, q, strict=True))
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    assert all(q[a] <= q[b] + 1e-12 for a, b in itertools.pairwise(order))


@given(st.integers(1, 500), st.integers(1, 500), st.integers(1000, 5000))
def test_rise_z_has_the_sign_of_the_change(x_cur, x_base, n):
    z = rise_z(x_cur, n, x_base, n, 1.0)
    assert (z > 0) == (x_cur > x_base) and (z < 0) == (x_cur < x_base)
    assert rise_z(x_cur, n, x_base, n, 4.0) == pytest.approx(z / 2)


def test_dispersion_is_near_one_for_binomial_counts_and_large_for_drifting_ones():
    rng = random.Random(9)
    binomial = [sum(rng.random() < 0.3 for _ in range(2000)) for _ in range(40)]
    assert 0.5 < dispersion(binomial, [2000] * 40) < 1.6
    drifting = [int(2000 * (0.2 + 0.2 * (i % 2))) for i in range(40)]
    assert dispersion(drifting, [2000] * 40) > 50


def test_readiness_counts_the_windows_a_fresh_group_needs_then_says_ready():
    config = DetectionConfig()
    detector = RegressionDetector(config)
    need = config.warm_up
    assert need == config.min_baseline_windows + config.min_persist
    fresh = detector.readiness("h", "model")
    assert (fresh.collected, fresh.needed, fresh.ready, fresh.remaining) == (0, need, False, need)
    rng = random.Random(5)
    for i, w in enumerate(steady(rng, need)):
        detector.observe(w)
        state = detector.readiness("h", "model")
        assert (
            state.collected == i + 1
            and state.ready == (i + 1 >= need)
            and detector.evaluations == (i + 1 >= need)
        )
    detector.observe(window(rng, need, samples=config.min_window_samples - 1))
    assert detector.readiness("h", "model").thin == 1


def test_readiness_after_a_deploy_needs_only_the_pool_of_the_new_version():
    config = DetectionConfig()
    detector = RegressionDetector(config)
    rng = random.Random(6)
    old = config.min_baseline_windows + 1  # a short run of the old version: a baseline, never evaluated
    detector.seed(steady(rng, old))
    detector.observe(window(rng, old, version="2.0"))
    state = detector.readiness("h", "model")
    assert not state.ready and state.remaining == config.min_persist - 1
    detector.observe(window(rng, old + 1, version="2.0"))
    assert detector.readiness("h", "model").ready and detector.evaluations == 1


def test_spells_that_ended_before_the_oldest_kept_window_are_forgotten():
    """Each raised regression remembers its spell (no baseline in it); one that ended before the
    oldest kept window can no longer matter and is dropped, so a function that flaps for months
    does not grow the detector's memory (or the time of each evaluation)."""
    rng = random.Random(7)
    detector = RegressionDetector()
    for w in steady(rng, WARMUP):
        detector.observe(w)
    (group,) = detector._groups.values()
    oldest = group.history[0].window.start
    kept = [(oldest - 10.0, oldest + 1.0), (oldest + 5.0, math.inf)]
    group.spells = [(oldest - 20.0, oldest - 10.0)] * 1000 + kept
    detector.observe(window(rng, WARMUP))
    assert group.spells == kept


def test_the_detector_keeps_at_most_max_groups_the_least_recently_fed_going_first():
    rng = random.Random(1)
    detector = RegressionDetector(max_groups=3)

    def of(group: str, index: int, samples: int = 3000):
        w = window(rng, index, samples=samples)
        return dataclasses.replace(w, labels=dataclasses.replace(w.labels, group=group))

    for index, group in enumerate(["a", "b", "c", "a", "d"]):  # "b" was fed least recently when "d" came
        detector.observe(of(group, index))
    assert [detector.readiness("h", g).collected for g in "abcd"] == [2, 0, 1, 1]
    assert detector.groups_evicted == 1
    for index in range(10):  # thin windows (too few samples) are counted per group, as boundedly
        detector.observe(of(f"thin{index}", index, samples=1))
    assert len(detector._thin) == 3 and len(detector._groups) == 3
