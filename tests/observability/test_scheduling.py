"""observability.real_time_scheduling: what `tickbus run` and the broker log when systemd (or chrt)
starts them in a real-time class (deploy/README.md, "Lower tail latency"); and
observability.idle_scheduling, which `tickbus profiler` uses to yield to the actors."""

from __future__ import annotations

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
