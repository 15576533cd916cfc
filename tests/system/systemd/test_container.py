"""The units in a real systemd: Debian bookworm booted as PID 1 in systemd-nspawn (see nspawn.py).

The fixture follows deploy/README.md: a virtualenv from a wheelhouse built on the host, `tickbus
deploy install --prefix /`, `systemd-sysusers`, a broker config with CURVE and the permissions file
of step 2b (the block of deploy/README.md itself), two groups (feed, and model running the tick
sink) and the collector's env file, all clients with server B's key, `systemctl enable`, then a
reboot: everything checked here started at boot.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.systemd.nspawn import CGROUP_ROOTS, CannotBootError, Container

# the first run builds the rootfs (debootstrap, about a minute) inside the first test's setup
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("TICKBUS_ROOTFS_CACHE", "/var/cache/tickbus-test-rootfs"))
UNITS = ("tickbus-broker", "tickbus-actors@feed", "tickbus-actors@model", "tickbus-profiler")
GROUPS = {  # the group names of deploy/README.md's server B, which its permissions file grants
    "feed": '[group]\nname = "feed"\n\n[[actor]]\nclass = "service_actors:Ticker"\n',
    "model": '[group]\nname = "model"\n\n[[actor]]\nclass = "service_actors:Sink"\n'
    '[actor.config]\nblock_file = "/var/lib/tickbus/block-sink"\n',
}
PERMISSIONS = "/etc/tickbus/keys/permissions.toml"


def readme_block(first_line: str) -> str:
    """The fenced block of deploy/README.md whose first line starts with ``first_line``."""
    blocks = (REPO / "deploy/README.md").read_text().split("```")[1::2]  # the insides of the fences
    for block in blocks:
        body = block.split("\n", 1)[1]  # drop the info string (toml, sh)
        if body.startswith(first_line):
            return body
    raise AssertionError(f"deploy/README.md has no block starting {first_line!r}")


def _skip_unless_nspawn_can_run() -> None:
    if os.geteuid() != 0:
        pytest.skip("the systemd container tier needs root (debootstrap, systemd-nspawn, cgroups)")
    for tool, package in (
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
    ):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package {package!r}; tests/ensure_system_deps.sh)")
    if not all(root.is_dir() and os.access(root, os.W_OK) for root in CGROUP_ROOTS):
        pytest.skip(f"cannot create cgroups under {[str(r) for r in CGROUP_ROOTS]}: nspawn cannot run here")


def _rootfs() -> Path:
    done = subprocess.run(
        ["bash", str(REPO / "tests/system/systemd/ensure_rootfs.sh")],
        check=False,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if done.returncode != 0:
        raise AssertionError(f"building the container rootfs failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _pip_wheel(*args: str) -> None:
    argv = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", *args]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")


def _wheelhouse(run_dir: Path) -> tuple[Path, Path]:
    """(dependencies, tickbus): the dependencies' wheels cached per pyproject.toml, tickbus's fresh.

    Built on the host with pip (its cache, or PyPI the first time), so the container needs no network.
    """
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    deps = CACHE / f"wheelhouse-{digest}"
    if not deps.is_dir():
        partial = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=CACHE))
        try:
            _pip_wheel("--wheel-dir", str(partial), str(REPO))
            for wheel in partial.glob("tickbus-*.whl"):
                wheel.unlink()  # tickbus itself is built fresh each run
            try:
                partial.rename(deps)
            except OSError:  # another run built it meanwhile
                if not deps.is_dir():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    own = run_dir / "tickbus-wheel"
    _pip_wheel("--no-deps", "--wheel-dir", str(own), str(REPO))
    return deps, own


def _install_like_an_operator(c: Container) -> None:
    """deploy/README.md, steps 1 to 3, on one server (which plays the broker's and the clients' part)."""
    c.run("python3", "-m", "venv", "/opt/tickbus")
    c.run(
        "/opt/tickbus/bin/pip", "install", "-q", "--no-index", "--disable-pip-version-check",
        "--find-links", "/mnt/wheelhouse", "--find-links", "/mnt/tickbus-wheel", "tickbus",
        timeout=300,
    )  # fmt: skip
    c.run("/opt/tickbus/bin/tickbus", "deploy", "install", "--prefix", "/")
    c.run("systemd-sysusers")
    # the operator's own actors, outside the virtualenv, found through PYTHONPATH in tickbus.env
    lib = c.host_path("/opt/trading/lib")
    lib.mkdir(parents=True)
    shutil.copy(REPO / "tests/system/systemd/service_actors.py", lib / "service_actors.py")
    # step 1b: CURVE keys, the client's public key on the broker's allow-list, the clients' env
    tickbus = "/opt/tickbus/bin/tickbus"
    c.run("install", "-d", "-m", "750", "-g", "tickbus", "/etc/tickbus/keys", "/etc/tickbus/keys/allowed")
    for name in ("broker", "host-b"):  # this one server plays server B's part too
        c.run(tickbus, "keys", "generate", name, "--dir", "/etc/tickbus/keys")
    c.run("cp", "/etc/tickbus/keys/host-b.key", "/etc/tickbus/keys/allowed/")
    # step 2b: the permissions file exactly as deploy/README.md prints it
    c.host_path(PERMISSIONS).write_text(readme_block(f"# {PERMISSIONS}"))
    c.run("sh", "-c", "chgrp -R tickbus /etc/tickbus/keys && chmod 640 /etc/tickbus/keys/*.key_secret")
    broker_toml = c.host_path("/etc/tickbus/broker.toml")  # step 2: CURVE on
    broker_toml.write_text(
        broker_toml.read_text()
        .replace("#curve_secret", "curve_secret")
        .replace("#allow_dir", "allow_dir")
        .replace("#permissions", "permissions")
    )
    env = c.host_path("/etc/tickbus/tickbus.env")
    env.write_text(
        env.read_text()
        + "PYTHONPATH=/opt/trading/lib\n"
        + "TICKBUS_CURVE_SERVERKEY=/etc/tickbus/keys/broker.key\n"
        + "TICKBUS_CURVE_SECRET=/etc/tickbus/keys/host-b.key_secret\n"
    )
    for name, text in GROUPS.items():
        c.host_path(f"/etc/tickbus/groups/{name}.toml").write_text(text)
    c.host_path("/etc/tickbus/profiler.env").write_text("TICKBUS_PROFILER_WINDOW=2\n")
    c.run("systemctl", "daemon-reload")
    c.run("systemctl", "enable", *UNITS)


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    _skip_unless_nspawn_can_run()
    rootfs = _rootfs()
    with tempfile.TemporaryDirectory(prefix="tickbus-nspawn-") as tmp:
        deps, own = _wheelhouse(Path(tmp))
        c = Container(
            rootfs, Path(tmp) / "machine", binds=[(deps, "/mnt/wheelhouse"), (own, "/mnt/tickbus-wheel")]
        )
        try:
            try:
                c.boot()
            except CannotBootError as exc:  # nspawn's own refusal: this machine cannot run the tier
                pytest.skip(f"systemd-nspawn cannot boot a container on this machine: {exc}")
            _install_like_an_operator(c)
            c.poweroff()
            c.boot()  # the reboot: from here on, everything was started by systemd at boot
            yield c
        finally:
            c.destroy()


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` (systemd state has no event to wait on from outside) until truthy."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.1)
    return result


def show(c: Container, unit: str, *props: str) -> dict[str, str]:
    out = c.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(c: Container, unit: str) -> list[dict[str, Any]]:
    out = c.run("journalctl", "--no-pager", "-o", "json", "-u", f"{unit}.service").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def message(entry: dict[str, Any]) -> str:
    value = entry.get("MESSAGE", "")
    return bytes(value).decode(errors="replace") if isinstance(value, list) else str(value)


def all_active(c: Container) -> bool:
    return c.run("systemctl", "is-active", *UNITS, check=False).stdout.split() == ["active"] * len(UNITS)


def wait_all_active(c: Container, timeout: float = 60.0) -> None:
    """Every unit active; on timeout, the AssertionError carries their status and latest logs."""
    try:
        until(lambda: all_active(c), timeout, "all four units active")
    except AssertionError as exc:
        status = c.run("systemctl", "status", "--no-pager", "-n", "15", *UNITS, check=False).stdout
        raise AssertionError(f"{exc}:\n{status[-6000:]}") from None


def test_every_unit_starts_at_boot_and_reports_ready(container):
    wait_all_active(container)
    # Type=notify: "active" means READY=1 arrived; the status line is the one the process sent
    status = {unit: show(container, unit, "StatusText", "Type", "NRestarts") for unit in UNITS}
    assert {s["Type"] for s in status.values()} == {"notify"}
    assert status["tickbus-broker"]["StatusText"].startswith(
        "tickbus broker ready frontend=tcp://127.0.0.1:5550"
    )
    assert status["tickbus-actors@feed"]["StatusText"] == "group feed running actors ticker"
    assert status["tickbus-actors@model"]["StatusText"] == "group model running actors sink"
    assert status["tickbus-profiler"]["StatusText"].startswith("tickbus profiler ready host=")
    boots = container.run("journalctl", "--list-boots", "--no-pager").stdout.strip().splitlines()
    assert len(boots) >= 2, "the units were enabled in the first boot and started by the second"


_KEYLESS_CLIENT = """
import asyncio, actors
async def main():
    try:
        hub = await actors.connect(wait=3)
    except actors.ConnectError as exc:
        print("refused:", exc)
    else:
        await hub.close()
        print("admitted")
asyncio.run(main())
"""


def test_with_curve_on_a_client_without_keys_is_refused_and_logged(container):
    wait_all_active(container)
    done = container.run("/opt/tickbus/bin/python", "-c", _KEYLESS_CLIENT, timeout=30)
    assert done.stdout.startswith("refused:"), done.stdout
    logged = until(
        lambda: [m for m in map(message, journal(container, "tickbus-broker")) if "refused peer" in m],
        10,
        "the broker's log line about the refused client",
    )
    assert "127.0.0.1" in logged[-1]


_TICK_PROBE = """
import asyncio, actors
async def main():
    hub = await actors.connect(wait=5, name="model")  # CURVE from the environment: server B's key
    tick = asyncio.Event()
    actors.Subscriber(hub, "probe").add_sync_listener(actors.Key("tick", "*"), lambda k, p: tick.set())
    await asyncio.wait_for(tick.wait(), 10)
    print("tick received")
    {then}
    await hub.close()
asyncio.run(main())
"""
_FORGER = _TICK_PROBE.format(
    then='hub.publish(actors.Key("$bus", "hb", "feed"), {})  # the feed group\'s heartbeat: not its own'
)


def test_with_the_readmes_permissions_the_groups_drop_nothing_and_a_forgery_is_dropped(container):
    wait_all_active(container)
    broker_log = lambda: list(map(message, journal(container, "tickbus-broker")))  # noqa: E731
    assert any("broker CURVE on" in m for m in broker_log())
    assert not [m for m in broker_log() if "broker dropped" in m or "no table for" in m]
    env = ["TICKBUS_CURVE_SERVERKEY=/etc/tickbus/keys/broker.key"]
    env += ["TICKBUS_CURVE_SECRET=/etc/tickbus/keys/host-b.key_secret"]
    done = container.run("env", *env, "/opt/tickbus/bin/python", "-c", _FORGER, timeout=60)
    assert done.stdout.startswith("tick received"), (done.stdout, done.stderr)
    dropped = until(
        lambda: [m for m in broker_log() if "broker dropped" in m],
        10,
        "the broker's log line about the forged heartbeat",
    )
    assert "identity 'host-b': reserved" in dropped[0], dropped


def test_installed_units_pass_systemd_analyze_verify_inside(container):
    units = [
        f"/etc/systemd/system/{u}"
        for u in ("tickbus-broker.service", "tickbus-actors@.service", "tickbus-profiler.service")
    ]
    done = container.run("systemd-analyze", "verify", *units, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_running_units_are_hardened(container):
    """`systemd-analyze security`: 0 is locked down, 10 is exposed; "OK" ends below 5 (measured 1.7,
    2.2 for the collector, which keeps CAP_SYS_PTRACE and the @debug system calls)."""
    for unit in UNITS:
        out = container.run("systemd-analyze", "security", "--no-pager", unit).stdout
        summary = out.strip().splitlines()[-1]  # "→ Overall exposure level for X.service: 1.7 OK :-)"
        exposure = float(summary.split(": ", 1)[1].split()[0])
        print(f"\n{unit}: exposure {exposure}")
        assert exposure <= 3.0, summary


def test_logs_reach_the_journal_as_json_lines(container):
    wait_all_active(container)
    entries = journal(container, "tickbus-actors@model")
    records = []
    for entry in entries:
        text = message(entry)
        if text.startswith("{"):
            records.append(json.loads(text))
    running = [r for r in records if r["message"].startswith("group model running actors")]
    assert running, f"no JSON 'group model running' line in {[message(e) for e in entries][-20:]}"
    assert running[0]["service"] == "model"
    assert running[0]["level"] == "INFO"
    assert isinstance(running[0]["pid"], int)


def test_the_collector_attaches_to_both_groups_and_stores_windows(container):
    def windows(group: str) -> str:
        done = container.run(
            "/opt/tickbus/bin/tickbus", "profile", "windows", "--data-dir", "/var/lib/tickbus", "--actor", group,
            check=False,
        )  # fmt: skip
        rows = [line.split() for line in done.stdout.splitlines()[1:]]
        # a window with samples: ID START(2) SECONDS GROUP PID VERSION SAMPLES ...
        return done.stdout if done.returncode == 0 and any(int(r[7]) > 0 for r in rows) else ""

    for group in ("feed", "model"):
        table = until(lambda g=group: windows(g), 90, f"a stored window with samples of group {group}")
        assert f" {group} " in table
        print(f"\ncollector windows of {group}:\n{table}")
    assert show(container, "tickbus-profiler", "NRestarts")["NRestarts"] == "0"


def test_kill_9_of_an_actor_group_restarts_it(container):
    wait_all_active(container)
    before = show(container, "tickbus-actors@feed", "MainPID", "NRestarts")
    container.run("kill", "-9", before["MainPID"])

    def restarted() -> bool:
        now = show(container, "tickbus-actors@feed", "MainPID", "NRestarts", "ActiveState")
        return now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"])

    killed = time.monotonic()
    until(restarted, 30, "tickbus-actors@feed restarted after kill -9")
    print(
        f"\nkill -9: tickbus-actors@feed active again with a new pid after {time.monotonic() - killed:.2f} s"
    )
    assert (
        int(show(container, "tickbus-actors@feed", "NRestarts")["NRestarts"]) == int(before["NRestarts"]) + 1
    )
    texts = [message(e) for e in journal(container, "tickbus-actors@feed")]
    assert any("status=9/KILL" in t for t in texts), texts[-20:]


def test_an_actor_whose_loop_blocks_is_killed_by_the_watchdog_and_restarted_in_time(container):
    unit = "tickbus-actors@model"
    wait_all_active(container)
    before = show(container, unit, "MainPID", "NRestarts", "WatchdogUSec", "RestartUSec")
    watchdog_s = _seconds(before["WatchdogUSec"])
    restart_s = _seconds(before["RestartUSec"])
    block = container.host_path("/var/lib/tickbus/block-sink")
    block.write_text("3600")  # the sink blocks its loop for an hour, unless systemd steps in

    def started_again() -> dict[str, str] | None:
        now = show(container, unit, "MainPID", "ActiveState", "ExecMainStartTimestampMonotonic")
        fresh = now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"])
        return now if fresh else None

    after = until(started_again, watchdog_s + restart_s + 30, f"{unit} restarted after blocking its loop")
    entries = journal(container, unit)

    def when(pid: str, text: str) -> float:
        for entry in entries:
            if text in message(entry) and entry.get("_PID", pid) == pid:
                return int(entry["__MONOTONIC_TIMESTAMP"]) / 1e6
        raise AssertionError(f"no {text!r} in the journal of {unit}: {[message(e) for e in entries][-30:]}")

    blocked = when(before["MainPID"], "sink blocks its event loop for 3600.0 s")
    killed = when("1", "Watchdog timeout")
    started = int(after["ExecMainStartTimestampMonotonic"]) / 1e6
    print(
        f"\nwatchdog: blocked at +0.0 s, killed at +{killed - blocked:.2f} s, started again at "
        f"+{started - blocked:.2f} s (WatchdogSec={watchdog_s:g}, RestartSec={restart_s:g})"
    )
    # the feed stops with the loop: the kill comes within WatchdogSec of the block, once the last
    # feed (a third of the period before it at most, plus any loop lag) has run out
    assert watchdog_s / 2 <= killed - blocked <= watchdog_s + 1.0
    assert started - blocked <= watchdog_s + restart_s + 1.5
    assert int(show(container, unit, "NRestarts")["NRestarts"]) == int(before["NRestarts"]) + 1
    # SIGABRT with PYTHONFAULTHANDLER=1: the stack of the blocking call is in the journal
    texts = [message(e) for e in entries]
    assert any("check_block" in t for t in texts), texts[-30:]
    assert not block.exists()
    until(
        lambda: show(container, unit, "StatusText")["StatusText"] == "group model running actors sink",
        30,
        "ready",
    )


def _seconds(value: str) -> float:
    """A systemd time span as `systemctl show` prints it (``10s``, ``2s``, ``100ms``, ``1min 30s``)."""
    total = 0.0
    units = {"min": 60.0, "ms": 0.001, "us": 1e-6, "s": 1.0, "h": 3600.0}
    for part in value.split():
        for suffix, factor in units.items():
            if part.endswith(suffix) and part[: -len(suffix)].replace(".", "").isdigit():
                total += float(part[: -len(suffix)]) * factor
                break
        else:
            raise ValueError(f"cannot read the time span {value!r}")
    return total


def test_systemctl_stop_drains_and_exits_zero_then_start_reports_ready(container):
    unit = "tickbus-actors@feed"
    wait_all_active(container)
    pid = show(container, unit, "MainPID")["MainPID"]
    started = time.monotonic()
    container.run("systemctl", "stop", unit, timeout=60)  # returns once the process has exited
    took = time.monotonic() - started
    state = show(
        container, unit, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode", "TimeoutStopUSec"
    )
    print(
        f"\nsystemctl stop {unit}: {took:.2f} s, result {state['Result']}, exit status {state['ExecMainStatus']}"
    )
    # SIGTERM → STOPPING=1 → drain → exit 0: no SIGKILL after TimeoutStopSec, no failure
    assert (state["ActiveState"], state["Result"], state["ExecMainCode"], state["ExecMainStatus"]) == (
        "inactive",
        "success",
        "1",  # CLD_EXITED: exited by itself, not killed
        "0",
    )
    assert took < _seconds(state["TimeoutStopUSec"])
    texts = [message(e) for e in journal(container, unit) if e.get("_PID") == pid]
    assert any('"message": "group feed running actors' in t for t in texts)
    container.run("systemctl", "start", unit, timeout=60)  # Type=notify: returns after READY=1
    assert show(container, unit, "ActiveState", "StatusText") == {
        "ActiveState": "active",
        "StatusText": "group feed running actors ticker",
    }


_REALTIME = readme_block("for unit in tickbus-broker.service")  # deploy/README.md, "Lower tail latency"


def _thread_rows(ps_output: str) -> list[tuple[str, str, str]]:
    """(class, real-time priority, name) of each thread in the output of the block's ps line."""
    lines = ps_output.strip().splitlines()
    rows = lines[next(i for i, line in enumerate(lines) if line.split()[:3] == ["PID", "TID", "CLS"]) + 1 :]
    return [(cls, rtprio, comm) for _pid, _tid, cls, rtprio, comm in (row.split(None, 4) for row in rows)]


def _threads(c: Container, unit: str) -> list[tuple[str, str, str]]:
    """The threads of ``unit``'s main process, by the block's ps line."""
    ps_line = _REALTIME.strip().splitlines()[-1].replace("tickbus-actors@model", unit)
    return _thread_rows(c.run("bash", "-c", ps_line).stdout)


def test_the_readmes_realtime_drop_in_runs_every_thread_at_fifo_20_and_the_undo_restores_it(container):
    wait_all_active(container)
    realtime = ("tickbus-broker", "tickbus-actors@feed", "tickbus-actors@model")
    env = ["TICKBUS_CURVE_SERVERKEY=/etc/tickbus/keys/broker.key"]
    env += ["TICKBUS_CURVE_SECRET=/etc/tickbus/keys/host-b.key_secret"]
    try:
        shown = container.run("bash", "-e", "-c", _REALTIME, timeout=120).stdout
        assert {(cls, rtprio) for cls, rtprio, _ in _thread_rows(shown)} == {("FF", "20")}, shown
        wait_all_active(container)
        for unit in realtime:
            threads = _threads(container, unit)
            print(f"\n{unit}: {threads}")
            assert len(threads) >= 2, threads  # the loop and ZeroMQ's I/O thread at least
            assert {(cls, rtprio) for cls, rtprio, _ in threads} == {("FF", "20")}, threads
            pid = show(container, unit, "MainPID")["MainPID"]
            limits = container.run("cat", f"/proc/{pid}/limits").stdout
            # and it cannot raise it: no RLIMIT_RTPRIO
            assert re.search(r"^Max realtime priority\s+0\s+0\s", limits, re.MULTILINE), limits
        # (SCHED_IDLE once ready; nice 19 while its CPUs were saturated, as by a slow boot of the others)
        until(lambda: _profiler_classes(container) == {("IDL", "pid")}, 120, "tickbus-profiler at SCHED_IDLE")
        for unit, who in (("tickbus-broker", "broker"), ("tickbus-actors@model", "group model")):
            until(
                lambda unit=unit, who=who: any(
                    who in m and "runs at SCHED_FIFO priority 20" in m
                    for m in map(message, journal(container, unit))
                ),
                10,
                f"{unit}'s log line about real-time scheduling",
            )
        done = container.run(
            "env", *env, "/opt/tickbus/bin/python", "-c", _TICK_PROBE.format(then="pass"), timeout=60
        )
        assert done.stdout.startswith("tick received"), (done.stdout, done.stderr)  # still a bus
    finally:
        # the undo, as the README says it: remove the drop-ins, reload, restart
        drop_ins = (
            "/etc/systemd/system/tickbus-broker.service.d /etc/systemd/system/tickbus-actors@.service.d"
        )
        container.run("sh", "-c", f"for d in {drop_ins}; do rm -f $d/realtime.conf; done")
        container.run("systemctl", "daemon-reload")
        container.run("systemctl", "restart", "tickbus-broker", "tickbus-actors@*", timeout=120)
    wait_all_active(container)
    for unit in realtime:
        assert {(cls, rtprio) for cls, rtprio, _ in _threads(container, unit)} == {("TS", "-")}


def _profiler_classes(c: Container) -> set[tuple[str, str]]:
    """(class, nice) of every thread of tickbus-profiler and of its Austin samplers (``pid`` for a
    class without nice)."""
    pid = show(c, "tickbus-profiler", "MainPID")["MainPID"]
    rows = c.run("ps", "-L", "-o", "cls=,ni=", "-p", pid, "--ppid", pid, check=False).stdout.split("\n")
    return {(cls, "pid" if ni == "-" else ni) for cls, ni in (r.split() for r in rows if r.strip())}


def test_a_starved_collector_runs_at_nice_19_until_its_cpus_have_time_to_spare(container):
    # tickbus/_scheduling.py: at SCHED_IDLE on saturated CPUs the collector and its samplers would get
    # no time at all (28 s to start, 25 s to stop, blind meanwhile); the unit lets it go back to the
    # normal class at nice 19 (LimitNICE=+19, unprivileged user) and it returns once they have time
    wait_all_active(container)
    pid = show(container, "tickbus-profiler", "MainPID")["MainPID"]
    limits = container.run("cat", f"/proc/{pid}/limits").stdout
    # systemd sets the closest limit it may: without CAP_SYS_RESOURCE (some sandboxes) it stays at 0
    allowed = re.search(r"^Max nice priority\s+1\s+1\s", limits, re.MULTILINE) is not None
    if not allowed:
        assert not _may_raise_rlimits(), limits
    until(lambda: _profiler_classes(container) == {("IDL", "pid")}, 120, "tickbus-profiler at SCHED_IDLE")
    restarts = show(container, "tickbus-profiler", "NRestarts")["NRestarts"]
    hogs = [
        subprocess.Popen(["taskset", "-c", str(cpu), "sh", "-c", "while :; do :; done"])
        for cpu in sorted(os.sched_getaffinity(0))
    ]

    def said(text: str) -> bool:
        return any(text in message(e) for e in journal(container, "tickbus-profiler"))

    try:
        if allowed:
            until(
                lambda: _profiler_classes(container) == {("TS", "19")},
                60,
                f"tickbus-profiler and its samplers at nice 19 with every CPU busy: {_profiler_classes(container)}",
            )
        else:  # it says once why it stays, naming the setting
            until(
                lambda: said("may not leave SCHED_IDLE"),
                60,
                "the collector's warning that it may not leave SCHED_IDLE",
            )
            assert said("LimitNICE=+19")
            assert _profiler_classes(container) == {("IDL", "pid")}
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if allowed:
        assert said("profiler starved at SCHED_IDLE (its CPUs")
        until(
            lambda: _profiler_classes(container) == {("IDL", "pid")},
            120,
            "tickbus-profiler back at SCHED_IDLE once its CPUs have time to spare",
        )
        assert said("profiler back at SCHED_IDLE")
    assert show(container, "tickbus-profiler", "NRestarts")["NRestarts"] == restarts
    lines = [m for m in map(message, journal(container, "tickbus-profiler")) if "SCHED_IDLE" in m]
    print(f"\nnice limit allowed: {allowed}; the collector said:\n" + "\n".join(lines))


def _may_raise_rlimits() -> bool:
    """Whether this process holds CAP_SYS_RESOURCE (systemd in the container has no more)."""
    effective = next(
        line.split()[1]
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("CapEff:")
    )
    return bool(int(effective, 16) >> 24 & 1)  # CAP_SYS_RESOURCE is capability 24
