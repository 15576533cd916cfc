"""Regression detection on profile windows: which function of which actor started to cost more.

The method, per actor group (host + group; a restarted process keeps its history):

1. **Measure.** For every window (:class:`~observability.profiling._windows.ProfileWindow`) and function, its
   *self* count (samples where it is the leaf) and *inclusive* count (samples with it anywhere on the
   stack), out of the window's samples. In CPU mode a sample is ``interval`` of CPU, so a share is
   the fraction of the actor's CPU spent in (or below) the function. Windows with fewer than
   ``min_window_samples`` samples are ignored, and so are functions matching ``ignore`` (by default
   the event loop's ``selectors`` wait: its CPU samples measure how idle the actor is, not a cost).
2. **Baseline.** Each pool of step 3 has its own: the ``baseline_windows`` windows of the same
   version just before the pool (so a baseline never overlaps what it is tested against, and a
   change older than the smallest pool does not leak into the baseline of the pool that matches its
   age), keeping only windows whose message rate (handled per second) is within ``load_tolerance``
   of the current one: a load change moves every share (fixed costs spread over more messages), so
   windows are only compared with windows at a similar load; after a load change detection resumes
   once ``min_baseline_windows`` windows at the new load exist. The current load is the latest
   window's, and only the latest run of windows at that load (at most ``max_pool``) is pooled (step
   3): a pool across a load change would compare windows of the new load with a baseline of the old
   one (a doubled rate moved a handler's share by 18 % in the recorded test run: fixed costs spread,
   and the sampler's view of a busier loop changes). When the new version has fewer than
   ``min_baseline_windows`` such windows before a pool (right after a deploy), the latest windows of
   the previous version at a similar load are that pool's baseline (the alert then names
   ``baseline_version``).
3. **Test.** The current sample is the pool of the last ``m`` windows of the current version, for
   every ``m`` of ``pools`` (2, 3, 5, 8, 13 and 21 windows) that there are windows and a baseline
   for, each against its own baseline (step 2). For each function whose self or inclusive share is
   at least ``min_share`` (baseline or current), a one-sided two-proportion z-test on the pooled
   counts, current against baseline, with the variance inflated by the function's over-dispersion
   ``phi``: the Pearson chi-square of its per-window counts across the baseline windows over their
   degrees of freedom (samples inside a window are not independent: a handler runs for many ticks in
   a row), at least 1 and at least the median over all functions (a quasi-binomial test; with
   ``phi = 1`` it is the plain test on pooled counts; it is measured on each pool's baseline). The
   smallest p over the pools tested and the two kinds (one for a function that is a leaf wherever it
   appears) is multiplied by their number (Bonferroni), then the Benjamini-Hochberg procedure at
   level ``alpha`` runs over all functions of the evaluation; ``confidence`` is 1 minus the
   BH-adjusted p (q-value).
4. **Effect size.** The share must rise by at least ``min_absolute_change`` (share points) and as
   much as the function made ``min_relative_change`` costlier would raise it
   (:func:`~observability.profiling._regression_stats.share_costlier`: ``p (1+r) / (1+rp)``). A share
   grows less than its function's cost (the samples it gains grow the whole too), so asking the share
   itself to grow by ``min_relative_change`` would ask a function of 37 % to be 8 % costlier, and one
   of 60 % 13 %: a 10 % regression of a big function sat at the threshold and was missed one time in
   ten by its estimate's noise alone.
5. **Transients.** Each of the last ``min_persist`` (the smallest pool) windows, and at least half
   of the pool's windows (its median window), must on its own show the function above the baseline
   share by half the minimum effect (half the absolute rise, and the share of a function half the
   minimum costlier): one hot window cannot raise an alert, however large, nor can a
   burst of a few in a long pool (``confirm`` > 1 also asks for that many evaluations in a row).
   Every window of a long pool is not asked: with ~550 samples a window whose share also wanders by
   2 points, a 25 % costlier function of 35 % stands ~1.5 window standard deviations above that
   level and one window in 15 falls below it: all 21 of a pool would pass a quarter of the time.
6. **Cost moved, not added** (refactors). Among the samples that do not count for the function,
   every other function keeps its proportion when the function alone got costlier. When work moved
   into it from a caller instead (the caller's code moved into a new callee), that caller's own part
   drops beyond dilution. The drops significant at ``local_z``, scaled to the share they stand for,
   are summed; at least ``refactor_fraction`` of the function's rise means a move: no alert.
   Siblings (the callers' other callees) are not counted: tried on real samples, they cancelled true
   regressions too, because a costlier function shifts its siblings' part of the rest as well.
7. **Load.** Besides the load-matched baseline (step 2): inside its callers' subtree the function's
   part ``L`` must grow too, as much as the function made ``min_relative_change`` costlier would
   grow it (a part near the whole cannot grow much) and significantly (z >= ``local_z``), and ``L``
   must be under ``max_local_share``.
   More messages scale a handler's whole subtree and leave its parts' proportions alone; a function
   that is (almost) all of its callers' cost is judged through its callers, and a root frame (a
   thread's start) through what it calls.
8. **One alert per regression.** The best of the two kinds is kept per function, and of candidates on
   one call path only the deepest (a costlier leaf raises the inclusive share of every caller above
   it). An alert stays active (no repeats) until, for ``resolve_after`` evaluations in a row, the last
   ``resolve_pool`` windows pooled are back below the middle between the baseline share frozen when the
   alert was raised and the share that raised it; then one *resolved* event. The windows of a
   regression's spell are left out of later baselines (a costlier function lowers every other share,
   which would make the others look costlier once it is fixed), unless it lasted more than
   ``baseline_windows`` windows: then it is the new normal.

Limits: shares are relative, so a function near 100 % of its subtree cannot show a rise; Austin 3's
CPU mode counts a runnable but preempted thread as running, so on a busy machine the samples of one
function come in runs and ``phi`` grows (the test stays honest, it just needs more windows); the
per-message CPU change is reported (``per_message_change``) but not tested, because the ``handled``
counters reach the collector up to a second late and make it noisy on short windows.

Sensitivity is a matter of samples. To see a function holding a share ``p`` of the samples become
``r`` costlier (its share then ``p(1+r)/(1+rp)``) within ``k`` windows 19 times out of 20, the rise
must stand ~6.2 standard errors out (z ~ 4.56 after the corrections at the default ``alpha``: 6
pools x 2 kinds, 10 functions; plus 1.65), against a baseline of 30 windows; a window needs about
``(1 + k/30) * 38 * (1+rp)^2 / (k * r^2 * p * (1-p))`` samples (times ``phi`` when the windows
vary more than sampling explains). For example:

======  =====  ==  =========================
share   rise   k   samples per window needed
======  =====  ==  =========================
40 %    20 %   2   ~2,500
40 %    10 %   5   ~4,000
35 %    25 %   8   ~510
35 %    25 %   13  ~350
35 %    10 %   21  ~1,500
5 %     20 %   2   ~11,000
5 %     20 %   13  ~2,300
5 %     10 %   21  ~6,600
======  =====  ==  =========================

Why pools up to 21 windows, in steps of ~1.6 (issue 13: "an alert within 10 minutes of a 25 %
slowdown at default settings"). A step change ``k`` windows old is best seen by the pool of its
``k`` windows against the windows before them: the rise's z grows like ``sqrt(k)`` while ``k`` is
small next to the baseline. Pools used to stop at 5 windows against the windows before the latest 5,
so from its 6th window a change leaked into the baseline and the evidence stopped growing: a change
too small for 5 windows was never seen (a recorded model actor at 100 Hz, ~550 samples per 20 s
window, its 35 % ``score_signal`` made 25 % costlier: its Bonferroni-adjusted p bottomed out at
7e-5, where BH at ``alpha`` over the 16 functions tested needed 2e-5). With each pool's baseline
before it, the evidence grows for ``max_pool`` windows (7 minutes at 20 s). Sizes in a geometric
series lose little against trying every size: for a change ``k`` old the largest pool ``m <= k``
holds at least ``k/1.67`` of its windows, a z at most ``sqrt(1.67) = 1.29`` times smaller (~1.1 in
the middle of a step; its baseline holds the other ``k - m`` windows of the change, at most 8 of
30), for 6 tests instead of 20 (every size 2..21), and the Bonferroni price of 6 over the former 4
is small: z 4.56 instead of 4.48 at 10 functions. The false-alarm rate is still ``alpha`` per
evaluation: each pool is tested against windows it does not contain, its over-dispersion measured on
those, Bonferroni covers the pools and kinds, and BH the functions. Measured on synthetic windows
(550 samples, a 35 % function whose share also wanders with an sd of 2 points from window to window,
``phi`` ~2): 21 false alerts in 62,200 clean evaluations (3.4e-4 per evaluation; 20 in 61,600 with
the former pools), while a 25 % rise was flagged within 30 windows in 197 of 200 seeds (median 7
windows; 107 of 200 with the former pools); the recorded actor above is flagged 8 windows (2.5
minutes) after the change.

With half as many samples a change is still seen about half the time within ``k`` windows, and
later for sure. At the default 100 Hz a 20 s window of a fully busy actor holds ~2,000 samples; an
actor busy 10 % of the time holds 200, so only large shares or changes show within a few windows
(a function of 10 % made 3x costlier needs ~100 samples a window to show within 2):
sample it faster (``--interval-us``; Austin 3.7 here samples evenly up to ~1 kHz, ~700 CPU samples a
second of a saturated target) or use longer windows. The live tests
(``tests/system/profiling/test_detection_live.py``) sample at 1 kHz into windows sized by this table.

How it relates to published detectors:

- **FBDetect** (Meta, SOSP 2024) tracks per-subroutine CPU share from fleet-wide stack sampling,
  finds change points in those series, and then removes false positives: transient spikes, *cost
  shift* (a refactor or inlining moving cost between subroutines; they compare the parent's cost), and
  duplicates of one root cause. Steps 5, 6 and 8 are the same filters on one host's windows; we have
  no fleet, so the statistics are per actor with explicit over-dispersion instead.
- **Apache Otava** (ex Hunter) finds change points with E-Divisive means and keeps those whose two
  segments differ by a Student's t-test at a chosen p. Here the change point is the start of the
  pooled current windows (every pool size of ``pools`` is tried, paid for with Bonferroni), which
  suits a stream that is tested as each window arrives.
- **Mozilla Perfherder** compares the 12 points before and after each candidate with Welch's t-test
  and alerts above a t threshold and a minimum percentage change. The over-dispersed pooled-count test
  is the same idea on per-window shares weighted by samples; ``min_relative_change`` is its minimum
  change. Perfherder leaves triage to people; here the refactor and load filters do the first pass.

Defaults: ``alpha`` 3e-4 (300 evaluations without a false alarm need a per-evaluation error well
under 1/300), pools of 2, 3, 5, 8, 13 and 21 windows, each against up to 30 windows before it at a
similar load (at least 8), a 5 % and 0.4 point minimum rise, functions of at least 2 % of the
samples, an alert resolved on the last 5 windows.

Warm-up: a group is first evaluated once it has ``warm_up`` = ``min_baseline_windows +
min_persist`` usable windows of one version at one load (10 by default: a baseline, then the
smallest pool; it was 13 when every pool shared the baseline before the largest), or, right after a
deploy, ``min_persist`` windows of the new version when the previous one left a baseline; larger
pools join as windows come (all six after 29). :meth:`RegressionDetector.readiness` says how far a
group is, and the collector logs it. With the collector's default 20 s windows that is ~3.5 minutes
after it starts and 40 s after a deploy. The statistical parameters do not depend on the window
length; shorter windows mean more evaluations an hour (3 a minute at 20 s), so ``alpha`` is a
per-evaluation rate: 300 evaluations are 100 minutes at 20 s. Tests use short windows and a faster
sampler. Pure logic: no clock, sockets or processes; times are the windows' own.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from ._detection import DetectionConfig, Readiness, Regression
from ._regression_stats import (
    Kind,
    WindowCounts,
    benjamini_hochberg,
    callers_of,
    dispersion,
    is_ancestor,
    message_rate,
    moved_share,
    normal_sf,
    rise_z,
    share_costlier,
    subtree_counts,
)
from ._windows import ProfileWindow

_KINDS: tuple[Kind, ...] = ("self", "inclusive")


@dataclass
class _Active:
    regression: Regression
    calm: int = 0  # evaluations in a row below the resolve level


@dataclass
class _Group:
    history: deque[WindowCounts]
    active: dict[str, _Active] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # evaluations in a row a function was found
    # (since, until) of regressions: their windows are no baseline (shares of the others moved too)
    spells: list[tuple[float, float]] = field(default_factory=list)
    evaluations: int = 0


@dataclass(frozen=True)
class _Candidate:
    function: str
    kind: Kind
    p: float
    pool: int
    base_share: float
    cur_share: float
    per_message: float | None


MAX_GROUPS = 1_024
"""(host, group) pairs a detector keeps a history for; past that, the one fed least recently goes
(with its alerts: its process has not sent a window for longest), counted in ``groups_evicted``."""


class RegressionDetector:
    """Feed windows with :meth:`observe`; get :class:`Regression` events (raised and resolved)."""

    def __init__(self, config: DetectionConfig | None = None, *, max_groups: int = MAX_GROUPS) -> None:
        self.config = config or DetectionConfig()
        self.max_groups = max_groups
        # least recently fed first (a window moves its group to the end)
        self._groups: dict[tuple[str, str], _Group] = {}
        self._thin: dict[tuple[str, str], int] = {}  # windows below min_window_samples, per group
        self.evaluations = 0
        self.groups_evicted = 0

    def active(self) -> list[Regression]:
        """The regressions currently active, in every group."""
        return [a.regression for g in self._groups.values() for a in g.active.values()]

    def readiness(self, host: str, group: str) -> Readiness:
        """How many windows the group has and needs before detection runs on it."""
        cfg = self.config
        found = self._groups.get((host, group))
        thin = self._thin.get((host, group), 0)
        if found is None or not found.history:
            return Readiness(host, group, 0, cfg.warm_up, thin, 0)
        same, run, near = self._current(found)
        pool = min(len(run), cfg.min_persist)
        base = self._baseline(found, same, pool, near)
        have = pool + len(base)
        # with a baseline only the smallest pool is missing, if anything; else both are
        need = len(base) + cfg.min_persist if len(base) >= cfg.min_baseline_windows else cfg.warm_up
        return Readiness(host, group, have, need, thin, found.evaluations)

    def seed(self, windows: Iterable[ProfileWindow]) -> None:
        """Fill the history (e.g. from the store after a restart) without evaluating."""
        for window in sorted(windows, key=lambda w: w.end):
            self._remember(window)

    def observe(self, window: ProfileWindow) -> list[Regression]:
        """Add one closed window and evaluate its group: the alerts raised and resolved by it."""
        group = self._remember(window)
        if group is None:
            return []
        return self._evaluate(group)

    # -- internals --------------------------------------------------------------------------------
    def _remember(self, window: ProfileWindow) -> _Group | None:
        key = (window.labels.host, window.labels.group)
        if sum(window.stacks.values()) < self.config.min_window_samples:
            if key not in self._thin and len(self._thin) >= self.max_groups:
                del self._thin[next(iter(self._thin))]
            self._thin[key] = self._thin.pop(key, 0) + 1
            return None
        group = self._groups.pop(key, None)
        if group is None:
            if len(self._groups) >= self.max_groups:
                del self._groups[next(iter(self._groups))]
                self.groups_evicted += 1
            keep = 2 * (self.config.baseline_windows + self.config.max_pool)
            group = _Group(deque(maxlen=keep))
        self._groups[key] = group  # the most recently fed, last
        group.history.append(WindowCounts.of(window))
        if group.spells:  # a spell that ended before the oldest kept window can no longer matter
            oldest = group.history[0].window.start
            group.spells = [(since, until) for since, until in group.spells if until > oldest]
        return group

    def _current(
        self, group: _Group
    ) -> tuple[list[WindowCounts], list[WindowCounts], Callable[[WindowCounts], bool]]:
        """(the windows of the latest version; the latest run of them at the current load, at most
        ``max_pool``, newest last: what pools are taken from; whether a window is at a similar load)."""
        cfg = self.config
        history = list(group.history)
        version = history[-1].window.labels.version
        same = [c for c in history if c.window.labels.version == version]
        load = message_rate(same[-1].window)

        def near(c: WindowCounts) -> bool:
            rate = message_rate(c.window)
            if rate is None or load is None:
                return True
            return (max(rate, load) + 1) / (min(rate, load) + 1) <= 1 + cfg.load_tolerance

        # a pool is taken from the latest run of windows at the current load: a pool across a load
        # change would hold windows of two loads, and its shares would be compared with neither
        latest = same[-cfg.max_pool :]
        run = len(latest)
        while run and near(latest[run - 1]):
            run -= 1
        return same, latest[run:], near

    def _baseline(
        self, group: _Group, same: list[WindowCounts], pool: int, near: Callable[[WindowCounts], bool]
    ) -> list[WindowCounts]:
        """The baseline of the pool of the latest ``pool`` windows: the windows of the version just
        before the pool, at a similar load and in no regression's spell (the previous version's
        latest ones when the version has too few)."""
        cfg = self.config
        earlier = [c for c in same[: len(same) - pool] if near(c)]
        base = [c for c in earlier if not self._in_spell(group, c, earlier)][-cfg.baseline_windows :]
        if len(base) < cfg.min_baseline_windows:
            version = same[-1].window.labels.version
            older = [c for c in group.history if c.window.labels.version != version]
            if older:
                previous = older[-1].window.labels.version
                base = [c for c in older if c.window.labels.version == previous and near(c)]
                base = base[-cfg.baseline_windows :]
        return base

    def _in_spell(self, group: _Group, c: WindowCounts, windows: list[WindowCounts]) -> bool:
        """True when ``c`` falls in a regression's spell that lasted at most ``baseline_windows``
        windows (a longer one is the new normal)."""
        for since, until in group.spells:
            if since <= c.window.start < until:
                inside = sum(1 for w in windows if since <= w.window.start < until)
                return inside <= self.config.baseline_windows
        return False

    def _evaluate(self, group: _Group) -> list[Regression]:
        cfg = self.config
        same, run, near = self._current(group)
        events = self._resolve(group, run)
        tests = {}  # pool size -> its baseline, for the pools there are windows for
        for m in cfg.pools:
            if m > len(run):
                break
            base = self._baseline(group, same, m, near)
            if len(base) >= cfg.min_baseline_windows:
                tests[m] = base
        if not tests:
            return events
        self.evaluations += 1
        group.evaluations += 1
        candidates, p_values = self._scan(tests, run)
        if not candidates:
            return events
        q_values = benjamini_hochberg(p_values)
        found = [
            (c, q)
            for c, q in zip(candidates, q_values, strict=True)
            if q <= cfg.alpha and self._holds(c, run, tests[c.pool])
        ]
        found = self._deepest(found, run)
        latest = run[-1].window
        group.pending = {c.function: group.pending.get(c.function, 0) + 1 for c, _ in found}
        for candidate, q in found:
            if candidate.function in group.active or group.pending[candidate.function] < cfg.confirm:
                continue
            pool = run[-candidate.pool :]
            base = tests[candidate.pool]
            regression = Regression(
                state="active",
                host=latest.labels.host,
                group=latest.labels.group,
                actors=latest.labels.actors,
                pid=latest.labels.pid,
                version=latest.labels.version,
                baseline_version=base[-1].window.labels.version,
                function=candidate.function,
                kind=candidate.kind,
                baseline_share=candidate.base_share,
                current_share=candidate.cur_share,
                relative_change=candidate.cur_share / candidate.base_share - 1.0
                if candidate.base_share
                else math.inf,
                confidence=1.0 - q,
                p_value=candidate.p,
                windows=candidate.pool,
                baseline_windows=len(base),
                since=pool[0].window.start,
                at=latest.end,
                per_message_change=candidate.per_message,
            )
            group.active[candidate.function] = _Active(regression)
            group.spells.append((regression.since, math.inf))
            events.append(regression)
        return events

    def _scan(
        self, tests: dict[int, list[WindowCounts]], run: list[WindowCounts]
    ) -> tuple[list[_Candidate], list[float]]:
        """Each tested function's best (lowest p) pool and kind, and its Bonferroni-adjusted p (step 3).

        ``tests`` maps each pool size to its baseline (the windows before the pool)."""
        cfg = self.config
        smallest = tests[min(tests)]
        functions = {f for c in (*smallest[-3:], *run) for f in c.incl if not any(i in f for i in cfg.ignore)}
        windows = list({id(c): c for base in tests.values() for c in (*base, *run)}.values())
        position = {id(c): i for i, c in enumerate(windows)}
        # every function's counts in `windows`, per kind: made once, sliced for every pool size
        counts = {
            "self": {f: [c.own.get(f, 0) for c in windows] for f in functions},
            "inclusive": {f: [c.incl.get(f, 0) for c in windows] for f in functions},
        }
        # a leaf everywhere has equal self and inclusive counts: one test, not two
        leaves = {f for f in functions if counts["self"][f] == counts["inclusive"][f]}
        best: dict[str, _Candidate] = {}
        for m, base in tests.items():
            at_base = [position[id(c)] for c in base]
            pool = run[-m:]
            at_pool = [position[id(c)] for c in pool]
            totals = [c.total for c in base]
            n_base = sum(totals)
            handled_base = sum(c.window.handled_total for c in base)
            n_cur = sum(c.total for c in pool)
            handled = sum(c.window.handled_total for c in pool)
            phis: dict[tuple[str, Kind], float] = {}
            sums: dict[tuple[str, Kind], tuple[int, int]] = {}
            for kind in _KINDS:
                for function, every in counts[kind].items():
                    in_base = [every[i] for i in at_base]
                    phis[(function, kind)] = dispersion(in_base, totals)
                    sums[(function, kind)] = (sum(in_base), sum([every[i] for i in at_pool]))
            floor = max(1.0, statistics.median(phis.values())) if phis else 1.0
            for function in functions:
                for kind in _KINDS[:1] if function in leaves else _KINDS:
                    x_base, x_cur = sums[(function, kind)]
                    base_share, cur_share = x_base / n_base, x_cur / n_cur
                    if max(cur_share, base_share) < cfg.min_share:
                        continue
                    phi = max(floor, phis[(function, kind)])
                    p = normal_sf(rise_z(x_cur, n_cur, x_base, n_base, phi))
                    found = best.get(function)
                    if found is None or p < found.p:
                        per_message = None
                        if handled and handled_base and x_base:
                            per_message = (x_cur / handled) / (x_base / handled_base) - 1.0
                        best[function] = _Candidate(function, kind, p, m, base_share, cur_share, per_message)
        candidates = list(best.values())
        p_values = [
            min(1.0, c.p * len(tests) * (1 if c.function in leaves else len(_KINDS))) for c in candidates
        ]
        return candidates, p_values

    def _holds(self, c: _Candidate, run: list[WindowCounts], base: list[WindowCounts]) -> bool:
        """Effect size, persistence, refactor and load checks (steps 4-7)."""
        cfg = self.config
        rise, least = c.cur_share - c.base_share, cfg.min_relative_change
        if rise < cfg.min_absolute_change or c.cur_share < share_costlier(c.base_share, least):
            return False
        floor = max(c.base_share + cfg.min_absolute_change / 2, share_costlier(c.base_share, least / 2))
        pool = run[-c.pool :]
        shares = [w.count(c.function, c.kind) / w.total for w in pool]
        if min(shares[-cfg.min_persist :]) < floor or statistics.median(shares) < floor:
            return False
        if moved_share(c.function, c.kind, pool, base, cfg.local_z) >= cfg.refactor_fraction * rise:
            return False
        return self._grew_locally(c, pool, base)

    def _grew_locally(self, c: _Candidate, pool: list[WindowCounts], base: list[WindowCounts]) -> bool:
        """The load check: inside its callers' subtree the function's part must grow too.

        More messages scale a handler's whole subtree and leave its parts' proportions alone.
        """
        cfg = self.config
        callers = callers_of(c.function, (w.window for w in pool))
        if not callers:  # a root (a thread's start): its descendants are the ones to name
            return False
        cur = [subtree_counts(c.function, c.kind, callers, w.window) for w in pool]
        old = [subtree_counts(c.function, c.kind, callers, w.window) for w in base]
        s_cur, s_base = sum(t for t, _ in cur), sum(t for t, _ in old)
        x_cur, x_base = sum(x for _, x in cur), sum(x for _, x in old)
        if not (s_base and s_cur) or x_base / s_base >= cfg.max_local_share:
            return False
        local_base = x_base / s_base
        if x_cur / s_cur < share_costlier(local_base, cfg.min_relative_change):
            return False
        phi = max(1.0, dispersion([x for _, x in old], [t for t, _ in old]))
        return rise_z(x_cur, s_cur, x_base, s_base, phi) >= cfg.local_z

    @staticmethod
    def _deepest(
        found: list[tuple[_Candidate, float]], current: list[WindowCounts]
    ) -> list[tuple[_Candidate, float]]:
        windows = [c.window for c in current]
        names = {c.function for c, _ in found}
        return [
            (c, q)
            for c, q in found
            if not any(other != c.function and is_ancestor(c.function, other, windows) for other in names)
        ]

    def _resolve(self, group: _Group, run: list[WindowCounts]) -> list[Regression]:
        cfg = self.config
        if not group.active or len(run) < cfg.min_persist:
            return []
        recent = run[-cfg.resolve_pool :]
        total = sum(c.total for c in recent)
        events: list[Regression] = []
        latest = recent[-1].window
        for function, active in list(group.active.items()):
            raised = active.regression
            share = sum(c.count(function, raised.kind) for c in recent) / total
            level = (raised.baseline_share + raised.current_share) / 2
            active.calm = active.calm + 1 if share < level else 0
            if active.calm >= cfg.resolve_after:
                del group.active[function]
                group.spells = [
                    (since, latest.start if since == raised.since and until == math.inf else until)
                    for since, until in group.spells
                ]
                events.append(
                    replace(
                        raised,
                        state="resolved",
                        pid=latest.labels.pid,
                        version=latest.labels.version,
                        current_share=share,
                        relative_change=share / raised.baseline_share - 1.0
                        if raised.baseline_share
                        else math.inf,
                        windows=len(recent),
                        since=recent[0].window.start,
                        at=latest.end,
                    )
                )
        return events
