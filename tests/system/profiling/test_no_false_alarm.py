"""No false alarm over a clean run of 360 windows, replayed from real sampling.

One real run (real broker, model actor, Austin at 1 kHz, 1 s windows) records three phases: the
base rate, the rate doubled, and the rate doubled with ``compute_features``'s work moved into a new
callee (a pure refactor). Each replayed 2 s window merges two recorded windows of its phase drawn at
random, so 120 windows per phase come from ~12 real ones; the detector sees them in order, as the
collector would, under several random draws.

A false alarm is an alert for a function whose cost did not change. The model times its functions
with its own clock as well (``spent`` in its state), so an alert the machine explains (the clock
found the function at least the detector's minimum effect costlier in the alert's windows than in
its baseline's) is told apart from one the detector made up.

Nothing here assumes a machine speed: the rate is calibrated on the target first (a slower machine
gets fewer messages, not a saturated target), each phase starts when the model confirms the switch
(not a fixed delay after sending it), and the recording goes on until every phase has its windows,
within a generous time bound that fails naming what was reached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import statistics
import time
from typing import Any

import pytest

from actors import AskTimeoutError
from actors.testing import BrokerProcess
from observability.profiling import (
    DetectionConfig,
    ProfileWindow,
    Regression,
    RegressionDetector,
    dispersion,
    merge_windows,
)
from tests.system.profiling.live import INTERVAL_US, NOISE_CAUSES, LiveRun, live_model

# messages/s asked while calibrating: ~12 % of the target's core where this was written, ~45 % on a VM
# three times slower (2026-12-07), where 1,000 saturated it
BASE_RATE = 300
BUSY = 0.35  # the base phase's share of the target's core; doubled (~70 %) it is still below saturation
CALIBRATION_WINDOWS = 3  # full windows at BASE_RATE, after the first (partial) one
PHASES = (("base", 1, False), ("double", 2, False), ("refactor", 2, True))  # name, rate factor, refactored
BLOCK = 3  # windows of a phase in a row before the next switch
WINDOWS_PER_PHASE = 12  # what each phase needs: with 120 replayed windows each is used ~20 times
MIN_SAMPLES = 50  # fewer in a 1 s window means the sampler stalled: not a window to replay
RECORD_TIMEOUT = 300.0  # s; ~60 s on an idle machine, ~70 s with two busy loops beside it
REPLAYED_PER_PHASE = 120
# The default alpha (3e-4) is chosen so that 300 evaluations pass without a false alarm (see the
# ``Defaults`` paragraph of observability.profiling's regression docstring): fewer would not test it.
MIN_EVALUATIONS = 300

RECORDINGS = 2  # a recording too noisy to judge (see recording_noise) is made once more
# the recordings are set up in the first test: their time bound (the module's) and more for the replay
pytestmark = [pytest.mark.slow, pytest.mark.timeout(RECORDINGS * RECORD_TIMEOUT + 120)]


@dataclasses.dataclass
class Recording:
    """The usable windows of each phase (relabelled, see :func:`record`) and the rate used."""

    phases: dict[str, list[ProfileWindow]]
    base_rate: float
    busy_at_calibration: float
    # phase -> function -> ns per call, by the model's own clock over all the phase's blocks
    cost: dict[str, dict[str, float]]


def busy(windows: list[ProfileWindow]) -> float:
    """The target's busy share of a core: in CPU mode Austin samples it only while it runs (or waits
    for a core), ``1e6 / INTERVAL_US`` times a second at most."""
    seconds = sum(w.end - w.start for w in windows)
    return sum(w.samples for w in windows) / seconds / (1e6 / INTERVAL_US)


def rate(window: ProfileWindow) -> float:
    """Messages handled per second in ``window``."""
    return window.handled_total / (window.end - window.start)


async def calibrate(run: LiveRun, deadline: float) -> tuple[float, float]:
    """(base rate, busy share measured while asking BASE_RATE): the rate at which the target is BUSY
    of a core.

    The work per message is fixed (iterations, not time), so the busy share grows with the rate; a
    machine half as fast gets half the messages, and its doubled phase is no more saturated than
    the reference machine's. The cost of a message is the busy share over the messages the target
    handled meanwhile (by its statistics), not over BASE_RATE: a target that could not keep up with
    BASE_RATE would otherwise get a base rate it is busier at than BUSY.
    """

    def full() -> list[ProfileWindow]:
        return [
            w
            for w in run.windows[1:]  # the first one is partial
            if w.end - w.start > 0.99 and run.handled_between(w.start, w.end)
        ]

    await run.wait_until(
        lambda: len(full()) >= CALIBRATION_WINDOWS,
        deadline - time.monotonic(),
        lambda: (
            f"calibration: {len(full())} of {CALIBRATION_WINDOWS} full windows at {BASE_RATE} messages/s "
            f"with the model's statistics on both sides, within the recording's bound of "
            f"{RECORD_TIMEOUT:.0f} s (statistics {len(run.handled_log)}, windows {len(run.windows)})"
        ),
    )
    windows = full()[:CALIBRATION_WINDOWS]
    measured = busy(windows)
    seconds = sum(w.end - w.start for w in windows)
    handled = sum(run.handled_between(w.start, w.end) or 0 for w in windows) / seconds
    return handled * min(4.0, max(0.125, BUSY / measured)), measured


async def switch(
    run: LiveRun, messages_per_s: float, refactored: bool, deadline: float
) -> tuple[float, dict[str, Any]]:
    """Drive at ``messages_per_s``, refactored or not; once the model confirms it, the time from
    which its windows are in the new phase, and the model's state then."""
    run.rates.append(round(messages_per_s))
    run.control("refactor", {"on": refactored})
    left = max(1.0, deadline - time.monotonic())
    try:
        state = await run.sync(left)
    except AskTimeoutError:
        raise TimeoutError(
            f"the model did not confirm the switch to {messages_per_s:.0f} messages/s, refactored "
            f"{refactored}, within {left:.0f} s: it is that far behind the messages sent before"
        ) from None
    assert state["refactored"] is refactored, state
    return time.time(), state


def clock_costs(marks: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per phase, the ns per call of each function the model times, from its state at each switch
    (``marks``: the phase that starts there and the state; the last one closes the last block)."""
    spent: dict[str, dict[str, int]] = {}
    calls: dict[str, int] = {}
    for (phase, state), (_, after) in itertools.pairwise(marks):
        calls[phase] = calls.get(phase, 0) + after["calls"] - state["calls"]
        for function, ns in after["spent"].items():
            spent.setdefault(phase, {})[function] = (
                spent.get(phase, {}).get(function, 0) + ns - state["spent"][function]
            )
    return {phase: {f: ns / max(1, calls[phase]) for f, ns in by.items()} for phase, by in spent.items()}


async def record(run: LiveRun) -> Recording:
    """Windows of the three phases, in interleaved blocks, until each phase has WINDOWS_PER_PHASE.

    Blocks of ``BLOCK`` windows cycle through base, doubled and doubled-and-refactored, so that
    whatever else the machine does meanwhile (other tests on two shared cores) falls on every phase
    alike. A block's windows are those that start after the model confirmed the switch (an ask
    queued behind every message sent before), lie between two statistics of the model that came
    after it, and hold at least MIN_SAMPLES samples.

    The windows are relabelled with the messages the model handled during them, interpolated
    between its statistics (about one a second): the collector counts the statistics that arrived
    in a window, and with 1 s windows against 1 s statistics a window gets none, one or two of them
    (in production, 60 s windows get 60 give or take one). A window counted as empty, merged by the
    replay with a full one, reads as half the load, and the detector rightly does not compare it
    with its phase: dozens of evaluations were lost that way, more on a slower machine.
    """
    started = time.monotonic()
    deadline = started + RECORD_TIMEOUT
    base_rate, measured = await calibrate(run, deadline)
    phases: dict[str, list[ProfileWindow]] = {p: [] for p, _, _ in PHASES}
    block: list[ProfileWindow] = []
    since = 0.0
    marks: list[tuple[str, dict[str, Any]]] = []

    def collected() -> bool:
        # between two statistics of the phase, so that its handled messages interpolate within it
        arrivals = [t for t, _ in run.handled_log if t >= since]
        block[:] = [
            w
            for w in run.windows
            if arrivals and arrivals[0] <= w.start and w.end <= arrivals[-1] and w.samples >= MIN_SAMPLES
        ]
        return len(block) >= BLOCK

    def reached() -> str:
        counts = {p: len(w) for p, w in phases.items()}
        return (
            f"not done after {time.monotonic() - started:.0f} s of recording (bound {RECORD_TIMEOUT:.0f} s): "
            f"the phases have {counts} of the {WINDOWS_PER_PHASE} windows each needs, the current block "
            f"{len(block)} of {BLOCK} (windows of at least {MIN_SAMPLES} samples since the switch, between "
            f"statistics of the model); samples per window lately "
            f"{[w.samples for w in run.windows[-5:]]}, statistics {len(run.handled_log)}, "
            f"base rate {base_rate:.0f}/s"
        )

    while any(len(windows) < WINDOWS_PER_PHASE for windows in phases.values()):
        for phase, factor, refactored in PHASES:
            since, state = await switch(run, factor * base_rate, refactored, deadline)
            marks.append((phase, state))
            await run.wait_until(collected, deadline - time.monotonic(), reached)
            phases[phase] += block[:BLOCK]
    marks.append(("", await run.sync(max(1.0, deadline - time.monotonic()))))
    relabelled = {
        phase: [
            dataclasses.replace(w, handled={"model": run.handled_between(w.start, w.end) or 0})
            for w in windows
        ]
        for phase, windows in phases.items()
    }
    return Recording(relabelled, base_rate, measured, clock_costs(marks))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Recording:
    data_dir = tmp_path_factory.mktemp("recorded")

    async def run_it() -> Recording:
        # A noisy minute (NOISE_CAUSES; among them the suite's other tests on 2 cores) makes a
        # recording that cannot judge false alarms, and the replay tests skip: record once more
        # then, the next minute is often quieter (one CI-style run in two skipped before).
        with BrokerProcess.start() as broker:
            for attempt in range(RECORDINGS):
                (data_dir / str(attempt)).mkdir()
                async with live_model(broker, data_dir / str(attempt), BASE_RATE, window=1.0) as run:
                    recording = await record(run)
                phi, where = recording_noise(recording.phases)
                if phi <= MAX_PHI:
                    break
                print(f"\nrecording {attempt + 1} of {RECORDINGS} too noisy to judge: {where} phi {phi:.1f}")
        return recording

    return asyncio.run(run_it())


def replay(recorded: dict[str, list[ProfileWindow]], seed: int) -> list[ProfileWindow]:
    """360 windows of 2 s: each merges two recorded windows of its phase.

    The recorded windows of a phase are used in random order, each once per pass, so an odd window
    (a log line, a GC pause) shows as often as it did in the recording and never twice in a row.
    """
    rng = random.Random(seed)
    out: list[ProfileWindow] = []
    t = 1_000_000.0
    for phase, _, _ in PHASES:
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


MAX_PHI = 1.5  # as in test_detection_live.py
NOISE_FUNCTIONS = ("score_signal", "compute_features")  # the two big ones: the shares that move most


def recording_noise(phases: dict[str, list[ProfileWindow]]) -> tuple[float, str]:
    """The largest over-dispersion of a big function's self counts across one phase's recorded
    windows (1: binomial noise only), and which function and phase it was."""
    worst, where = 0.0, ""
    for phase, windows in phases.items():
        for function in NOISE_FUNCTIONS:
            counts = [
                sum(n for f, n in w.self_counts().items() if f.endswith(f":Model.{function}"))
                for w in windows
            ]
            phi = dispersion(counts, [sum(w.stacks.values()) for w in windows])
            if phi > worst:
                worst, where = phi, f"{function} ({phase} phase)"
    return worst, where


def evaluable(recorded: dict[str, list[ProfileWindow]], config: DetectionConfig) -> dict[str, int]:
    """Replayed windows per phase the detector can evaluate (step 2 of its method): a phase at a new
    load (the first one too) waits for ``min_baseline_windows`` windows at that load before its
    smallest pool (``warm_up`` in all); a phase at the load of the one before is evaluated from its
    first window."""
    warm_up = config.warm_up - 1
    out: dict[str, int] = {}
    previous: float | None = None
    for phase, _, _ in PHASES:
        load = statistics.median(rate(w) for w in recorded[phase])
        same = previous is not None and (max(load, previous) + 1) / (min(load, previous) + 1) <= (
            1 + config.load_tolerance
        )
        out[phase] = REPLAYED_PER_PHASE - (0 if same else warm_up)
        previous = load
    return out


def clock_summary(recorded: Recording) -> dict[str, dict[str, float]]:
    return {p: {f: round(ns / 1000, 1) for f, ns in by.items()} for p, by in recorded.cost.items()}


def clock_change(recorded: Recording, index: int, alert: Regression) -> float | None:
    """How much costlier per call the model's clock found ``alert``'s function in the phases of the
    alert's windows (the ``alert.windows`` up to replayed window ``index``) than in those of its
    baseline (the ``alert.baseline_windows`` before them); ``None`` for a function it does not time."""
    name = alert.function.rpartition(":Model.")[2]
    if name not in recorded.cost[PHASES[0][0]]:
        return None
    first = index - alert.windows + 1

    def mean(windows: range) -> float:
        return statistics.fmean(recorded.cost[PHASES[i // REPLAYED_PER_PHASE][0]][name] for i in windows)

    return mean(range(first, index + 1)) / mean(range(max(0, first - alert.baseline_windows), first)) - 1


def test_the_recording_has_the_three_phases(recorded):
    phases = recorded.phases
    assert all(len(phases[p]) >= WINDOWS_PER_PHASE for p in phases), {p: len(w) for p, w in phases.items()}
    kernel = [w for w in phases["refactor"] if any(s.endswith(":Model.features_kernel") for s in w.stacks)]
    assert len(kernel) == len(phases["refactor"])  # the refactor took effect in every window
    assert not any(
        s.endswith(":Model.features_kernel") for p in ("base", "double") for w in phases[p] for s in w.stacks
    )
    handled = {p: statistics.mean(rate(w) for w in ws) for p, ws in phases.items()}
    for phase, windows in phases.items():
        shares = {}
        merged = merge_windows(windows)
        incl = merged.inclusive_counts()
        for name in (
            "Model.compute_features",
            "Model.features_kernel",
            "Model.score_signal",
            "Model.on_tick",
        ):
            shares[name] = [
                round(
                    sum(n for f, n in w.inclusive_counts().items() if f.endswith(":" + name)) / w.samples, 3
                )
                for w in windows
            ] + [round(sum(n for f, n in incl.items() if f.endswith(":" + name)) / merged.samples, 3)]
        print(
            f"\n{phase}: {len(windows)} windows, {handled[phase]:.0f} handled and "
            f"{sum(w.samples for w in windows) / len(windows):.0f} samples per window, "
            f"busy {busy(windows):.0%}, inclusive shares {shares}"
        )
    print(
        f"base rate {recorded.base_rate:.0f}/s (busy {recorded.busy_at_calibration:.0%} at {BASE_RATE}/s); "
        f"evaluable windows {evaluable(phases, DetectionConfig())}; noise {recording_noise(phases)}; "
        f"us per call by the model's clock {clock_summary(recorded)}"
    )
    # the load doubled: the target kept up with the doubled rate (it was not saturated)
    assert handled["double"] > 1.6 * handled["base"], (handled, f"base rate {recorded.base_rate:.0f}/s")


# Until 2026-11-24 this was marked xfail: sampled at 2.5 kHz with the target sharing both cores, the
# windows varied 2-3x more than binomially and one CI run of four flagged Model.compute_features at
# the refactor switch. Sampled at 1 kHz with the target alone on its core (see ``live``), the same
# recording varies less than binomially and no seed has raised an alert since (see CHANGELOG).
@pytest.mark.parametrize("seed", range(5))
def test_no_alert_over_360_replayed_windows_with_a_load_change_and_a_refactor(recorded, seed):
    # The same gate as the live detection tests: on a machine whose other processes preempt the
    # target, Austin's CPU mode counts the preempted time as running, the phases' shares move for
    # reasons that are not the code's, and replaying ~12 such windows 20 times each makes that a
    # lasting shift the detector rightly reports. Judge false alarms only on a recording whose windows
    # vary no more than MAX_PHI times what sampling alone explains.
    phi, where = recording_noise(recorded.phases)
    if phi > MAX_PHI:
        pytest.skip(
            f"this machine's sampling noise is too high to judge false alarms: {where}'s share varies "
            f"{phi:.1f}x more between recorded windows than sampling alone explains (at most {MAX_PHI} "
            f"assumed): {NOISE_CAUSES}"
        )
    detector = RegressionDetector()
    windows = replay(recorded.phases, seed)
    alerts, evaluated = [], []
    for i, window in enumerate(windows):
        before = detector.evaluations
        alerts += [(i, e) for e in detector.observe(window)]
        evaluated.append(detector.evaluations - before)
    per_phase = {
        phase: sum(evaluated[k * REPLAYED_PER_PHASE : (k + 1) * REPLAYED_PER_PHASE])
        for k, (phase, _, _) in enumerate(PHASES)
    }
    # An alert for a function the model's own clock found costlier by at least the detector's minimum
    # effect is not a false one: the machine changed its cost (CI once recorded check_limits 22 % costlier
    # in the refactored phase). The rest are.
    minimum = detector.config.min_relative_change
    changes = [(i, a, clock_change(recorded, i, a)) for i, a in alerts]
    explained = [
        (i, a.function.rpartition(":")[2], f"{c:+.1%}")
        for i, a, c in changes
        if c is not None and c >= minimum
    ]
    if explained:
        print(f"\nalerts for functions the clock found costlier (true ones): {explained}")
    assert [(i, a) for i, a, c in changes if c is None or c < minimum] == [], [
        (
            i,
            a.function.rpartition(":")[2],
            a.kind,
            a.baseline_share,
            a.current_share,
            c,
            clock_summary(recorded),
        )
        for i, a, c in changes
    ]
    # Enough evaluations for this to mean something, derived from the recording: every replayed
    # window the detector can evaluate at all (``evaluable``: all but its warm-up at each new load,
    # judged from the phases' recorded message rates), so that the load change and the refactor are
    # judged from their first evaluable window on (a window whose load was misread would be skipped,
    # and what it would have tested with it); and at least MIN_EVALUATIONS in all, the number the
    # default alpha is chosen for.
    possible = evaluable(recorded.phases, detector.config)
    assert per_phase == possible, {"evaluated": per_phase, "evaluable": possible}
    assert detector.evaluations >= MIN_EVALUATIONS, {"evaluated": per_phase, "evaluable": possible}
