"""A broker or actor group launched by ``actors.testing`` stops when its launcher dies by a signal.

Before, a test run killed by a signal (a libzmq assertion's SIGABRT, a CI timeout's SIGKILL) left
every ``tickbus broker`` and ``tickbus run`` it had started running, orphaned on their ports.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from actors.testing import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]

# The launcher starts a broker and an actor group from a worker thread that then ends (the reason
# the link is a pipe, not PR_SET_PDEATHSIG, which fires when the forking *thread* ends), reports
# their pids and temporary directories, and waits to be killed.
LAUNCHER = """
import json, sys, threading, time
from actors.testing import ActorProcess, BrokerProcess
started = {}
def launch():
    broker = BrokerProcess.launch()
    group = ActorProcess.launch(broker, "tests.system.integration.ask_actors:Pricer", name="pricing")
    started.update(broker=broker, group=group)
worker = threading.Thread(target=launch)
worker.start()
worker.join()
time.sleep(1.0)  # the worker thread is gone: both children must still run
broker, group = started["broker"], started["group"]
alive = broker.proc.poll() is None and group.proc.poll() is None
print(json.dumps({"alive": alive, "pids": [broker.proc.pid, group.proc.pid],
                  "dirs": [broker.tmpdir.name, group.tmpdir.name]}), flush=True)
time.sleep(600)
"""


def _exited(pidfd: int, timeout: float) -> bool:
    readable, _, _ = select.select([pidfd], [], [], timeout)  # a pidfd turns readable when it exits
    return bool(readable)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs os.pidfd_open (Linux 5.3+)")
def test_children_stop_when_the_launcher_is_killed() -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert launcher.stdout is not None
    line = launcher.stdout.readline()  # blocks until reported (each launch has its own timeout)
    assert line, f"the launcher exited with {launcher.wait()} before reporting its children"
    report = json.loads(line)
    pidfds = [os.pidfd_open(pid) for pid in report["pids"]]
    try:
        assert report["alive"], "a child stopped when the thread that launched it ended"
        launcher.send_signal(signal.SIGKILL)  # no finally, no atexit: only the kernel closes its fds
        launcher.wait()
        for pid, pidfd in zip(report["pids"], pidfds, strict=True):
            assert _exited(pidfd, 30.0), f"child {pid} still runs 30 s after its launcher was killed"
    finally:
        for pidfd in pidfds:
            if not _exited(pidfd, 0):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
        for path in report["dirs"]:
            shutil.rmtree(path, ignore_errors=True)
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        launcher.stdout.close()


def test_a_stopped_child_releases_its_link() -> None:
    with BrokerProcess.start() as broker:
        link = broker.parent_link
        assert link >= 0
        os.fstat(link)  # open while the broker runs
    assert broker.parent_link == -1
    with pytest.raises(OSError):
        os.fstat(link)  # closed with the broker: not one descriptor left per launch
