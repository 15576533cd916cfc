"""tickbus/_scheduling.py: when the collector leaves SCHED_IDLE for nice 19 and when it returns."""

from __future__ import annotations

from pathlib import Path

from tickbus._scheduling import Starvation, cpu_ticks

HZ = 100  # clock ticks a second of one CPU


def looks(
    state: Starvation, start: float, seconds: int, idle_share: float, ticks: list[int]
) -> list[str | None]:
    """One look a second for ``seconds``, the CPUs ``idle_share`` idle; the decisions, in order."""
    out = []
    for s in range(1, seconds + 1):
        ticks[0] += round(HZ * idle_share)
        ticks[1] += HZ
        out.append(state.observe(start + s, 0.0, (ticks[0], ticks[1])))
    return out


def test_on_time_with_cpu_to_spare_it_stays_idle():
    state = Starvation()
    assert looks(state, 0.0, 60, 0.5, [0, 0]) == [None] * 60
    assert state.idle and state.episodes == 0


def test_a_late_loop_sends_it_to_nice_19_at_once():
    state = Starvation()
    assert state.observe(1.0, 2.5, (0, 100)) == "low"
    assert not state.idle and state.episodes == 1
    assert state.reason == "its loop 2.5 s late"


def test_cpus_saturated_for_five_seconds_send_it_to_nice_19_not_sooner():
    state = Starvation()
    ticks = [0, 0]
    decisions = looks(state, 0.0, 6, 0.01, ticks)
    assert decisions == [None] * 5 + ["low"]  # the first look starts the measure: 5 s after it
    assert state.reason == "its CPUs 1.0% idle for 5 s"
    # a host busy but not saturated (5 % idle) keeps it at SCHED_IDLE
    assert looks(Starvation(), 0.0, 30, 0.05, [0, 0]) == [None] * 30


def test_at_nice_19_it_returns_after_thirty_seconds_with_a_tenth_of_its_cpus_idle():
    # not sooner than 30 s after it left (the measure starts there): it flaps no faster than that
    state = Starvation()
    ticks = [0, 0]
    assert looks(state, 0.0, 6, 0.0, ticks)[-1] == "low"
    # still saturated: it stays however long
    assert looks(state, 6.0, 120, 0.0, ticks) == [None] * 120
    # a tenth of them idle: the share over the last 30 s reaches it after 30 s
    decisions = looks(state, 126.0, 40, 0.1, ticks)
    assert decisions.index("idle") == 29, decisions
    assert state.idle and state.episodes == 1
    # saturated again: a second episode, measured afresh
    assert "low" in looks(state, 166.0, 6, 0.0, ticks)
    assert state.episodes == 2


def test_a_short_lull_does_not_bring_it_back():
    state = Starvation()
    ticks = [0, 0]
    assert looks(state, 0.0, 6, 0.0, ticks)[-1] == "low"
    # 10 s a fifth idle, then saturated: never 10 % over 30 s
    assert looks(state, 6.0, 10, 0.2, ticks) == [None] * 10
    assert looks(state, 16.0, 100, 0.0, ticks) == [None] * 100
    assert not state.idle


def test_cpu_ticks_sums_the_lines_of_the_given_cpus(tmp_path: Path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  10 0 10 100 5 0 0 0 0 0\n"
        "cpu0 1 0 1 40 1 0 0 0 0 0\n"
        "cpu1 2 0 2 30 2 0 0 3 0 0\n"
        "cpu10 100 0 0 0 0 0 0 0 0 0\n"
        "intr 12345\n"
    )
    assert cpu_ticks({0}, stat) == (41, 43)
    assert cpu_ticks({1, 10}, stat) == (32, 139)
    assert cpu_ticks({2}, stat) == (0, 0)
    idle, total = cpu_ticks({0})  # this machine's
    assert 0 <= idle <= total and total > 0
