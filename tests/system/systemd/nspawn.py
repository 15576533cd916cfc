"""A real systemd as PID 1 in a ``systemd-nspawn`` container, on a cached Debian rootfs.

Problem: the tests need systemd itself (``Type=notify``, watchdog, restarts, journald, ambient
capabilities), but must never boot it on this machine's own filesystem, and this machine's PID 1 is
not systemd: there is no machined (``--register=no``) and no manager to create a scope for the
container, and cgroups are v1 with a v2 ``unified`` mount (hybrid).

Approach: the container's root is an overlay of the cached rootfs (read-only lower layer, built once
by ``ensure_rootfs.sh``) and a per-test upper directory, mounted inside a private mount namespace
(``unshare --mount``), so the mount disappears with the container and the cache is never written.
Keeping the upper directory across boots makes a reboot a reboot: what was installed and enabled in
the first boot is there in the second. ``--keep-unit`` makes nspawn use the cgroup it was started in
rather than ask a manager for a scope; the wrapper puts itself in fresh ``tickbus-nspawn-*`` cgroups
(name=systemd v1 and the v2 mount), removed after the container stops. ``--private-network``: the
container has its own loopback, so its ports never collide with the host's tests. Commands run
inside with ``nsenter`` into the container's PID 1 (``systemctl``, ``journalctl``, ``kill``), with a
clean environment; files are reached from the host through ``/proc/<leader>/root``.

Limits: needs root, cgroup filesystems that can be written, and overlayfs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# hybrid (this machine): the name=systemd v1 hierarchy and the v2 mount; pure v2: its root
CGROUP_ROOTS = (
    (Path("/sys/fs/cgroup"),)
    if Path("/sys/fs/cgroup/cgroup.controllers").exists()
    else (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
)
_CLEAN_ENV = ("/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8")


class BootError(Exception):
    """The container's systemd did not finish booting; the message holds nspawn's own words."""


class CannotBootError(BootError):
    """systemd-nspawn exited before a PID 1 ran: this machine cannot run the container at all."""


class Container:
    """A booted container; use :meth:`boot`, :meth:`run`, :meth:`host_path` and :meth:`poweroff`."""

    def __init__(self, rootfs: Path, workdir: Path, binds: Sequence[tuple[Path, str]] = ()) -> None:
        self.rootfs = rootfs
        self.workdir = workdir
        self.binds = tuple(binds)
        self.name = f"tickbus-{secrets.token_hex(3)}"
        self.upper, self.work, self.merged = workdir / "upper", workdir / "work", workdir / "merged"
        for path in (self.upper, self.work, self.merged):
            path.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.boots = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"nspawn-{self.boots}.log"

    def _cgroups(self) -> list[Path]:
        return [root / self.name for root in CGROUP_ROOTS if root.is_dir()]

    def boot(self, timeout: float = 90.0) -> None:
        """Start the container and wait until systemd has finished booting (running or degraded)."""
        self.boots += 1
        cgroups = self._cgroups()
        for cgroup in cgroups:
            cgroup.mkdir(exist_ok=True)
        overlay = f"lowerdir={self.rootfs},upperdir={self.upper},workdir={self.work}"
        nspawn = [
            "systemd-nspawn",
            f"--directory={self.merged}",
            f"--machine={self.name}",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--console=pipe",
            *(f"--bind-ro={host}:{inside}" for host, inside in self.binds),
        ]
        script = (
            'for g in "$@"; do echo $$ > "$g/cgroup.procs"; done; '
            f"mount -t overlay overlay -o {overlay} {self.merged} && exec {' '.join(nspawn)}"
        )
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
                + [str(c) for c in cgroups],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        init_scope = [c / "payload" / "init.scope" / "cgroup.procs" for c in cgroups[:1]]
        while not self.leader:
            if self.proc.poll() is not None:
                raise CannotBootError(
                    f"systemd-nspawn exited with {self.proc.returncode}: {self.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise BootError(f"no PID 1 in the container within {timeout}s: {self.log()[-3000:]}")
            for procs in init_scope:
                pids = procs.read_text().split() if procs.exists() else []
                self.leader = int(pids[0]) if pids else 0
            time.sleep(0.05)  # nothing to wait on: nspawn reports the leader to nobody
        while True:  # until the manager listens on its bus (it does soon after PID 1 starts), then
            left = max(1.0, deadline - time.monotonic())  # until boot has finished
            done = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=left)
            state = done.stdout.strip()
            if state in ("running", "degraded"):
                return
            if state or "Failed to connect to bus" not in done.stderr or time.monotonic() > deadline:
                raise BootError(
                    f"systemd in the container is {state!r} ({done.stderr.strip()}): {self.log()[-3000:]}"
                )
            time.sleep(0.05)

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container (all its namespaces, a clean environment)."""
        if not self.leader:
            raise BootError("the container is not running")
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "--", *_CLEAN_ENV, *argv],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{argv} exited {done.returncode} in the container:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def host_path(self, inside: str) -> Path:
        """The host's path to ``inside`` (a path in the running container)."""
        return Path(f"/proc/{self.leader}/root") / inside.lstrip("/")

    def log(self) -> str:
        """What systemd-nspawn printed during the current boot."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def poweroff(self, timeout: float = 60.0) -> None:
        """Halt the container (SIGTERM to nspawn: systemd shuts down), SIGKILL if it hangs; clean up."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None
        self.leader = 0
        for cgroup in self._cgroups():
            _remove_cgroup(cgroup)

    def destroy(self) -> None:
        """Power off and remove the upper layer (everything the tests wrote)."""
        self.poweroff()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _remove_cgroup(cgroup: Path) -> None:
    if not cgroup.exists():
        return
    for procs in cgroup.rglob("cgroup.procs"):  # stragglers of a killed container
        for pid in procs.read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for directory in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        while True:
            try:
                directory.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # killed processes leave their cgroup asynchronously
    cgroup.rmdir()
