"""Hosts as network namespaces: a switch namespace with a bridge, one veth cable per host.

::

    root ns (the test: observer 10.213.47.254) ──┐
    host a  10.213.47.1  (broker)  ──────────────┤ br0 in the switch namespace
    host b  10.213.47.2  (feed, model) ──────────┤   cutting a host = its switch-side port down
    host c  10.213.47.3  (strategy, collector) ──┤
    host d  10.213.47.4  (the pair's 2nd broker) ┘

Every name carries a random tag, so concurrent runs do not collide; :meth:`Network.close` removes
every namespace and link it made (deleting a namespace deletes the veth ends inside it, and with
them their peers), and is called even when building fails half-way.

:class:`Cluster` runs tickbus on those hosts: CURVE brokers (one, or a pair sharing one key pair),
``tickbus run`` groups and the test's own observer hub in the root namespace.
"""

from __future__ import annotations

import datetime
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import actors
from actors import ClientCurve

SUBNET = "10.213.47"
OBSERVER = f"{SUBNET}.254"
REPO = Path(__file__).resolve().parents[3]


class NetnsUnavailableError(Exception):
    """This machine cannot build namespace hosts; the message says why."""


def ip(*args: str, netns: str | None = None) -> None:
    """Run ``ip [-n NETNS] ARGS``; raise with ip's own message on failure."""
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")


def probe() -> None:
    """Raise :class:`NetnsUnavailableError` unless namespaces and veth pairs can be made here."""
    if os.geteuid() != 0:
        raise NetnsUnavailableError(f"network namespaces need root (this runs as uid {os.geteuid()})")
    if shutil.which("ip") is None:
        raise NetnsUnavailableError("the ip command (Debian package iproute2) is not installed")
    name = f"tbprobe{secrets.token_hex(3)}"
    try:
        ip("netns", "add", name)
    except RuntimeError as exc:
        raise NetnsUnavailableError(f"cannot create a network namespace: {exc}") from None
    try:
        ip("link", "add", "p0", "type", "veth", "peer", "name", "p1", netns=name)
    except RuntimeError as exc:
        raise NetnsUnavailableError(f"cannot create a veth pair: {exc}") from None
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)


@dataclass
class Network:
    """The switch and hosts ``a`` to ``d`` (``ns(host)``, ``address(host)``)."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # root-namespace links to delete

    HOSTS = ("a", "b", "c", "d")

    def ns(self, host: str) -> str:
        return f"tb{self.tag}{host}"

    @property
    def switch(self) -> str:
        return f"tb{self.tag}sw"

    def address(self, host: str) -> str:
        return f"{SUBNET}.{self.HOSTS.index(host) + 1}"

    def port(self, host: str) -> str:
        """The switch-side end of ``host``'s cable."""
        return f"tb{self.tag}{host}s"

    def build(self) -> None:
        ip("netns", "add", self.switch)
        self.namespaces.append(self.switch)
        ip("link", "add", "br0", "type", "bridge", netns=self.switch)
        ip("link", "set", "br0", "up", netns=self.switch)
        for host in self.HOSTS:
            ns = self.ns(host)
            ip("netns", "add", ns)
            self.namespaces.append(ns)
            ip("link", "set", "lo", "up", netns=ns)
            ip("link", "add", "eth0", "type", "veth", "peer", "name", self.port(host), netns=ns)
            ip("link", "set", self.port(host), "netns", self.switch, netns=ns)
            ip("addr", "add", f"{self.address(host)}/24", "dev", "eth0", netns=ns)
            ip("link", "set", "eth0", "up", netns=ns)
            ip("link", "set", self.port(host), "master", "br0", netns=self.switch)
            ip("link", "set", self.port(host), "up", netns=self.switch)
        # the observer: the test process itself, in the root namespace
        root_end = f"tb{self.tag}obs"
        ip("link", "add", root_end, "type", "veth", "peer", "name", "obs", "netns", self.switch)
        self.links.append(root_end)
        ip("addr", "add", f"{OBSERVER}/24", "dev", root_end)
        ip("link", "set", root_end, "up")
        ip("link", "set", "obs", "master", "br0", netns=self.switch)
        ip("link", "set", "obs", "up", netns=self.switch)

    def cut(self, host: str) -> None:
        """Pull ``host``'s cable out of the switch."""
        ip("link", "set", self.port(host), "down", netns=self.switch)

    def restore(self, host: str) -> None:
        ip("link", "set", self.port(host), "up", netns=self.switch)

    def close(self) -> None:
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False, timeout=30)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30)


_STAMP = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) ")


def _wall_time(line: str, near: float) -> float | None:
    """The ``time.time()`` of a text log line's local ``HH:MM:SS.mmm`` stamp, taken on the day that
    puts it within 12 hours of ``near``; None for a line without one."""
    match = _STAMP.match(line)
    if match is None:
        return None
    hours, minutes, seconds, millis = (int(g) for g in match.groups())
    day = datetime.datetime.fromtimestamp(near).replace(hour=0, minute=0, second=0, microsecond=0)
    stamped = day.replace(hour=hours, minute=minutes, second=seconds, microsecond=millis * 1000).timestamp()
    return stamped + round((near - stamped) / 86_400) * 86_400  # the nearest day's


@dataclass
class HostProcess:
    """A process in a host's namespace; its stderr lines are kept with their arrival times."""

    name: str
    proc: subprocess.Popen[str]
    lines: list[tuple[float, str]] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls, network: Network, host: str, name: str, argv: Sequence[str], env: dict[str, str]
    ) -> HostProcess:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TICKBUS_LOG_JSON": "0", **env}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        proc = subprocess.Popen(
            ["ip", "netns", "exec", network.ns(host), sys.executable, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=REPO,
        )
        child = cls(name, proc)
        for stream, sink in ((proc.stderr, child._stderr), (proc.stdout, child.stdout.append)):
            threading.Thread(target=cls._pump, args=(stream, sink), daemon=True).start()
        return child

    def _stderr(self, line: str) -> None:
        self.lines.append((time.monotonic(), line))

    @staticmethod
    def _pump(stream: object, sink: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink(line.rstrip("\n"))  # type: ignore[operator]

    def first(self, text: str, after: float = 0.0) -> float | None:
        """Arrival time of the first stderr line containing ``text`` that came after ``after``."""
        return next((t for t, line in list(self.lines) if t > after and text in line), None)

    def logged_at(self, text: str, after_wall: float) -> float | None:
        """When the process itself stamped the first stderr line containing ``text`` at or after
        ``after_wall`` (``time.time()``), from the line's ``HH:MM:SS.mmm`` (tickbus's text logs).

        Unlike :meth:`first`, this does not count how late the test read the line: on a loaded
        machine the test process, with a pump thread per child, can read a line a second late."""
        for _, line in list(self.lines):
            stamped = _wall_time(line, after_wall)
            if stamped is not None and stamped >= after_wall - 0.001 and text in line:
                return stamped
        return None

    def wait_stdout(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = next((s for s in list(self.stdout) if s.startswith(prefix)), None)
            if line is not None:
                return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)  # polling a list another thread fills
        raise AssertionError(f"{self.name} printed no {prefix!r} line; stderr: {self.log()[-3000:]}")

    def log(self) -> str:
        return "\n".join(line for _, line in list(self.lines))

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


FE_PORT, BE_PORT = 5550, 5551
BROKER_HEARTBEAT = ("0.5", "1.5")  # ivl, timeout: a silent peer is dropped within 2 s


def group_toml(name: str, target: str, fe: str, be: str, **config: object) -> str:
    """A one-actor group file; ``target`` is ``module:Class``."""
    lines = ["[group]", f'name = "{name}"', f'frontend = "{fe}"', f'backend = "{be}"', "", "[[actor]]"]
    lines += [f'class = "{target}"', "[actor.config]"]
    lines += [f"{k} = {v!r}" for k, v in config.items()]
    return "\n".join(lines) + "\n"


class Cluster:
    """The hosts' processes: CURVE brokers on ``broker_hosts`` (a pair shares the key pair ``broker``:
    a client holds one broker key), and whatever a test starts on the other hosts. A context manager:
    leaving it stops every process it started, last first."""

    def __init__(
        self, network: Network, keys: dict[str, Path], tmp_path: Path, broker_hosts: Sequence[str] = ("a",)
    ) -> None:
        self.network, self.keys, self.tmp_path = network, keys, tmp_path
        self.broker_hosts = tuple(broker_hosts)
        self.frontends = [f"tcp://{network.address(h)}:{FE_PORT}" for h in self.broker_hosts]
        self.backends = [f"tcp://{network.address(h)}:{BE_PORT}" for h in self.broker_hosts]
        self.fe, self.be = ",".join(self.frontends), ",".join(self.backends)  # as TOML and flags take them
        self.started: list[HostProcess] = []

    def start(self, host: str, name: str, argv: list[str], env: dict[str, str], ready: str) -> HostProcess:
        child = HostProcess.start(
            self.network, host, name, argv, {"TICKBUS_DATA_DIR": str(self.tmp_path / name), **env}
        )
        self.started.append(child)
        child.wait_stdout(ready, 30)
        return child

    def broker(self, host: str = "a") -> HostProcess:
        index = self.broker_hosts.index(host)
        argv = ["-m", "tickbus", "broker", "--frontend", self.frontends[index]]
        argv += ["--backend", self.backends[index]]
        argv += ["--curve-secret", str(self.keys["broker_secret"]), "--allow-dir", str(self.keys["allowed"])]
        argv += ["--heartbeat-ivl", BROKER_HEARTBEAT[0], "--heartbeat-timeout", BROKER_HEARTBEAT[1]]
        name = "broker" if index == 0 else f"broker-{host}"
        return self.start(host, name, [*argv, "--stats-interval", "0.5"], {}, "tickbus broker ready")

    def client_env(self, host: str) -> dict[str, str]:
        return {
            "TICKBUS_CURVE_SERVERKEY": str(self.keys["broker"]),
            "TICKBUS_CURVE_SECRET": str(self.keys[f"host-{host}_secret"]),
        }

    def group(self, host: str, name: str, target: str, **config: object) -> HostProcess:
        path = self.tmp_path / f"{name}.toml"
        path.write_text(group_toml(name, target, self.fe, self.be, **config))
        argv = ["-m", "tickbus", "run", "--config", str(path)]
        return self.start(host, name, argv, self.client_env(host), "tickbus run ready")

    def observer_curve(self) -> ClientCurve:
        return ClientCurve.from_files(self.keys["broker"], self.keys["observer_secret"])

    async def observer(self) -> actors.RemoteHub:
        curve = self.observer_curve()
        return await actors.connect(self.frontends, self.backends, name="observer", curve=curve)

    def close(self) -> None:
        for child in reversed(self.started):
            child.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
