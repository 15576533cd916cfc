"""observability.real_time_scheduling: what `tickbus run` and the broker log when systemd (or chrt)
starts them in a real-time class (deploy/README.md, "Lower tail latency"); and
observability.idle_scheduling, which `tickbus profiler` uses to yield to the actors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import observability

_PRINT = "import observability; print(observability.real_time_scheduling())"


def test_the_normal_class_is_none():
    done = subprocess.run([sys.executable, "-c", _PRINT], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "None"
    if os.sched_getscheduler(0) == os.SCHED_OTHER:
        assert observability.real_time_scheduling() is None


@pytest.mark.parametrize(("flag", "name"), [("--fifo", "SCHED_FIFO"), ("--rr", "SCHED_RR")])
def test_a_real_time_class_is_named_with_its_priority(flag: str, name: str):
    chrt = shutil.which("chrt")
    if chrt is None:
        pytest.skip("chrt is not installed (Debian package util-linux)")
    done = subprocess.run(
        [chrt, flag, "7", sys.executable, "-c", _PRINT], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip(
            f"this process may not use real-time scheduling (needs CAP_SYS_NICE): {done.stderr.strip()}"
        )
    assert (done.returncode, done.stdout.strip()) == (0, f"{name} priority 7"), done.stderr


_IDLE = """
import os, threading
import observability
started = threading.Event()
done = threading.Event()
worker = threading.Thread(target=lambda: (started.set(), done.wait()), daemon=True)
worker.start()
started.wait()
observability.idle_scheduling()
late = threading.Thread(target=lambda: print("late", os.sched_getscheduler(0) == os.SCHED_IDLE))
late.start(); late.join()
print("main", os.sched_getscheduler(0) == os.SCHED_IDLE)
print("worker", os.sched_getscheduler(worker.native_id) == os.SCHED_IDLE)
done.set()
"""


def test_idle_scheduling_moves_every_thread_and_what_starts_later_to_sched_idle():
    # the profiler's collector calls it: a thread running before the call moves too, one started
    # after inherits it, and the parent (this test) stays where it was
    before = os.sched_getscheduler(0)
    done = subprocess.run(
        [sys.executable, "-c", _IDLE], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["late", "True", "main", "True", "worker", "True"], done.stderr
    assert os.sched_getscheduler(0) == before


_LOW = """
import os, resource, signal, sys, time
import observability
rlimit, user = int(sys.argv[1]), int(sys.argv[2])
try:
    resource.setrlimit(resource.RLIMIT_NICE, (rlimit, rlimit))
except ValueError:  # raising it needs CAP_SYS_RESOURCE
    print("may not raise RLIMIT_NICE")
    sys.exit()
if user:  # as an unprivileged user: no CAP_SYS_NICE, only RLIMIT_NICE
    os.setgroups([])
    os.setgid(user)
    os.setuid(user)
child = os.fork()  # forked: this user may not be allowed to run the interpreter's file
if child == 0:
    time.sleep(60)
    os._exit(0)
try:
    observability.idle_scheduling(observability.child_processes())
    print("idle", os.sched_getscheduler(0) == os.SCHED_IDLE, os.sched_getscheduler(child) == os.SCHED_IDLE)
    try:
        observability.low_scheduling(observability.child_processes())
    except PermissionError:
        print("refused")
    else:
        policies = {os.sched_getscheduler(p) for p in (0, child)}
        nices = {os.getpriority(os.PRIO_PROCESS, p) for p in (0, child)}
        print("low", policies == {os.SCHED_OTHER}, nices == {19})
finally:
    os.kill(child, signal.SIGKILL)
"""


@pytest.mark.parametrize(
    ("rlimit", "user", "expected"),
    [
        (0, 0, "low True True"),  # CAP_SYS_NICE (root) needs no limit
        (0, 65534, "refused"),  # an unprivileged user with the default limit may not leave SCHED_IDLE
        (1, 65534, "low True True"),  # LimitNICE=+19, as tickbus-profiler.service sets it
    ],
)
def test_low_scheduling_leaves_sched_idle_for_nice_19_with_its_children_where_rlimit_nice_allows(
    rlimit: int, user: int, expected: str
):
    # tickbus profiler on saturated CPUs (tickbus/_scheduling.py); child_processes finds its samplers
    if os.geteuid() != 0:
        pytest.skip("needs root to set RLIMIT_NICE and change to another user")
    done = subprocess.run(
        [sys.executable, "-c", _LOW, str(rlimit), str(user)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() == "may not raise RLIMIT_NICE":
        pytest.skip("this machine may not raise RLIMIT_NICE (no CAP_SYS_RESOURCE, as in some containers)")
    assert done.stdout.splitlines() == ["idle True True", expected], done.stderr


def test_the_collectors_starvation_is_exported_as_opentelemetry_metrics(tmp_path):
    # tickbus/_scheduling.py sets these plain fields; the exporter reads them at each collection
    state = observability.profiler_scheduling
    before = (state.watching, state.starved, state.episodes)
    path = tmp_path / "metrics.jsonl"

    def points() -> dict[str, int]:
        assert observability.metrics.flush()
        found = {}
        for line in path.read_text().splitlines():
            for rm in json.loads(line)["resourceMetrics"]:
                for sm in rm["scopeMetrics"]:
                    for metric in sm["metrics"]:
                        if metric["name"].startswith("tickbus.profile.starv"):
                            data = metric.get("sum") or metric.get("gauge") or {}
                            for point in data.get("dataPoints", []):
                                found[metric["name"]] = int(point["asInt"])
        return found

    observability.metrics.enable("scheduling-test", otlp_file=path)
    try:
        state.watching, state.starved, state.episodes = False, False, 0
        assert points() == {}  # a process that does not watch exports neither
        state.watching, state.starved, state.episodes = True, True, 2
        assert points() == {"tickbus.profile.starved": 1, "tickbus.profile.starvation.episodes": 2}
        state.starved = False
        assert points()["tickbus.profile.starved"] == 0
    finally:
        observability.metrics.disable()
        state.watching, state.starved, state.episodes = before
