"""Docs that run (issue 13, item 1): every code block of README.md and deploy/README.md, read from
the files at test time and run as written against real brokers.

An HTML comment right before a block says what to do with it:

- ``<!-- docs-test: file PATH -->``: the block is a file the reader writes (PATH under the workspace;
  blocks of one page naming the same file are appended, as the page adds lines to it);
- ``<!-- docs-test: run NAME -->``: the block is run (``sh`` with ``bash -e``, ``python`` as a script)
  in the workspace, then :data:`CHECKS` [NAME] checks what it did (a message on the bus, its output);
- ``<!-- docs-test: skip (REASON) -->``: reported as a skipped test with the reason.

A block without a comment fails :func:`test_every_code_block_says_how_it_is_tested`.

What is changed in a block before it runs, and nothing else (:func:`_staged`): ``/etc/tickbus``,
``/var/lib/tickbus`` move under the workspace, ``/opt/tickbus/bin/`` is this virtualenv's bin directory,
the documented endpoints (``tcp://127.0.0.1:5550``, ``tcp://10.0.0.1:5550``, and ``:5551``) become free
loopback ports (also in ``$TICKBUS_FRONTEND``/``$TICKBUS_BACKEND``), and so do a broker pair's second
broker's (``tcp://127.0.0.1:5552``/``:5553``, ``tcp://10.0.0.4:5550``/``:5551``), the ``tickbus`` group is the test
user's own group, and ``"$(hostname)"`` is ``host-b`` (the staged install plays server B). The workspace
has ``.venv`` linked to the running virtualenv, and ``PYTHONPATH`` is this checkout. Every process a block
starts is in its own session and killed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import actors
from actors.testing import BrokerProcess, eventually, free_tcp_port

REPO = Path(__file__).resolve().parents[3]
DOCS = ("README.md", "deploy/README.md")
BIN = Path(sys.executable).parent
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(file|run|skip)\s*(.*?)\s*-->")
TIMEOUT = 60.0  # per wait: generous for a loaded 2-core machine


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    kind: str  # file | run | skip | "" (no directive)
    argument: str
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def read_blocks(doc: str) -> list[Block]:
    """The fenced code blocks of ``doc``, each with the docs-test comment on the line before it."""
    lines = (REPO / doc).read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            start, lang = i, lines[i][3:].strip()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            match = DIRECTIVE.fullmatch(lines[start - 1].strip()) if start else None
            kind, argument = (match.group(1), match.group(2)) if match else ("", "")
            found.append(
                Block(doc, start + 1, lang, kind, argument, "\n".join(lines[start + 1 : end]) + "\n")
            )
            i = end
        i += 1
    return found


ALL = [block for doc in DOCS for block in read_blocks(doc)]


def _run_block(name: str) -> Block:
    return next(b for b in ALL if b.kind == "run" and b.argument == name)


# -- the workspace: the reader's directory, staged ---------------------------------------------------


def _free_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_tcp_port()}"


@dataclass
class Workspace:
    path: Path
    frontend: str
    backend: str
    frontend2: str = field(default_factory=_free_endpoint)  # a broker pair's second broker
    backend2: str = field(default_factory=_free_endpoint)

    def staged(self, text: str) -> str:
        return _staged(text, self)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "TICKBUS_FRONTEND": self.frontend,
            "TICKBUS_BACKEND": self.backend,
            "TICKBUS_DATA_DIR": str(self.path / "data"),
            **extra,
        }


def _staged(text: str, ws: Workspace) -> str:
    group = grp.getgrgid(os.getgid()).gr_name
    for old, new in (
        ("/etc/tickbus", f"{ws.path}/etc/tickbus"),
        ("/var/lib/tickbus", f"{ws.path}/var/lib/tickbus"),
        ("/opt/tickbus/bin/", f"{BIN}/"),
        ("-g tickbus ", f"-g {group} "),
        ("chgrp tickbus ", f"chgrp {group} "),
        ('"$(hostname)"', "host-b"),
    ):
        text = text.replace(old, new)
    endpoints = {
        "tcp://127.0.0.1:5550": ws.frontend,
        "tcp://10.0.0.1:5550": ws.frontend,
        "tcp://127.0.0.1:5551": ws.backend,
        "tcp://10.0.0.1:5551": ws.backend,
        "tcp://127.0.0.1:5552": ws.frontend2,
        "tcp://10.0.0.4:5550": ws.frontend2,
        "tcp://127.0.0.1:5553": ws.backend2,
        "tcp://10.0.0.4:5551": ws.backend2,
    }
    # one pass, whole port numbers: a free port put in (say :55523) is never rewritten as :5552
    pattern = "|".join(rf"{re.escape(e)}(?!\d)" for e in endpoints)
    return re.sub(pattern, lambda m: endpoints[m.group(0)], text)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A directory holding every ``file`` block of both pages, staged, and ``.venv``."""
    ws = Workspace(tmp_path, _free_endpoint(), _free_endpoint())
    (tmp_path / ".venv").symlink_to(sys.prefix)
    written: dict[Path, str] = {}  # path -> the page that wrote it
    for block in ALL:
        if block.kind != "file":
            continue
        target = tmp_path / block.argument
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = "a" if written.get(target) == block.doc else "w"  # one page adds lines to its own file
        with target.open(mode) as out:
            out.write(ws.staged(block.text))
        written[target] = block.doc
    return ws


# -- running a block ----------------------------------------------------------------------------------


class Running:
    """A block running in its own session; its merged output is collected line by line."""

    def __init__(self, block: Block, ws: Workspace, env: dict[str, str] | None = None) -> None:
        text = ws.staged(block.text)
        if block.lang == "python":
            script = ws.path / f"block_{block.line}.py"
            script.write_text(text)
            args = [sys.executable, str(script)]
        else:
            assert block.lang == "sh", f"{block}: cannot run a {block.lang!r} block"
            args = ["bash", "-e", "-c", text]
        self.block = block
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            args,
            cwd=ws.path,
            env=env or ws.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def output(self) -> str:
        return "\n".join(self.lines)

    def _wait_line(self, needle: str, count: int, timeout: float) -> None:
        with self._changed:
            ok = self._changed.wait_for(
                lambda: sum(needle in line for line in self.lines) >= count or self.proc.poll() is not None,
                timeout,
            )
            if sum(needle in line for line in self.lines) < count:
                state = "exited" if ok else "timed out"
                raise AssertionError(
                    f"{self.block} {state} before {count}x {needle!r}:\n{self.output()[-4000:]}"
                )

    async def line(self, needle: str, count: int = 1, timeout: float = TIMEOUT) -> None:
        """Wait until ``count`` output lines contain ``needle``."""
        await asyncio.get_running_loop().run_in_executor(None, self._wait_line, needle, count, timeout)

    async def exit_code(self, timeout: float = TIMEOUT) -> int:
        code = await asyncio.get_running_loop().run_in_executor(None, self.proc.wait, timeout)
        await asyncio.get_running_loop().run_in_executor(None, self._reader.join, 5)
        return code

    def kill(self) -> None:
        """SIGTERM to the whole session (a background broker too); SIGKILL what is left after 15 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self.proc.poll()  # reap the shell: a zombie still counts as a member of its group
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)  # no event tells that a process group is empty
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)


@pytest.fixture
def run_block(workspace: Workspace) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(name: str, **env: str) -> Running:
        running = Running(_run_block(name), workspace, workspace.env(**env) if env else None)
        started.append(running)
        return running

    yield start
    for running in started:
        running.kill()


# -- the checks, one per `run` block -------------------------------------------------------------------


async def _receive(hub: actors.Hub, pattern: tuple[str, ...]) -> asyncio.Queue[tuple[Any, Any]]:
    received: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()
    actors.Subscriber(hub, f"docs-{'.'.join(pattern)}").add_sync_listener(
        actors.Key(*pattern), lambda key, payload: received.put_nowait((key, payload))
    )
    return received


async def _next(queue: asyncio.Queue[tuple[Any, Any]], what: str) -> tuple[Any, Any]:
    try:
        return await asyncio.wait_for(queue.get(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"no {what} within {TIMEOUT}s") from None


async def check_venv(run: Running, ws: Workspace) -> None:
    assert await run.exit_code() == 0, run.output()
    assert run.lines[-1] == f"tickbus {actors.version()}"


async def check_model(run: Running, ws: Workspace) -> None:
    await run.line("tickbus run ready")
    hub = await actors.connect(ws.frontend, ws.backend, name="docs")
    try:
        states, snapshots = await _receive(hub, ("state", "*")), await _receive(hub, ("ui", "snapshot"))
        await hub.sync()
        await hub.wait_for_subscribers(("tick", "AAPL"), timeout=TIMEOUT)
        hub.publish(actors.Key("tick", "AAPL"), {"px": 1.5})
        assert await _next(states, "state") == (("state", "AAPL"), {"px": 1.5})
        while (await _next(snapshots, "ui snapshot"))[1] != {"AAPL": 1.5}:
            pass
    finally:
        await hub.close()


async def check_pair(run: Running, ws: Workspace) -> None:
    await run.line("tickbus run ready")
    hub = await actors.connect([ws.frontend, ws.frontend2], [ws.backend, ws.backend2], name="docs")
    try:
        states = await _receive(hub, ("state", "*"))
        await hub.sync()
        await hub.wait_for_subscribers(("tick", "AAPL"), timeout=TIMEOUT)
        # sync() made one round trip, through whichever broker was first: a subscription may still be
        # on its way through the other, so tick until a state's second copy came (counted, not delivered)
        before, px = hub.statistics().redundant, 0.0
        async with asyncio.timeout(TIMEOUT):
            while hub.statistics().redundant == before:
                px += 1
                hub.publish(actors.Key("tick", "AAPL"), {"px": px})
                assert await _next(states, "state") == (("state", "AAPL"), {"px": px}), "each state once"
                await asyncio.sleep(0.1)  # time for a second copy to be counted
        stats = hub.statistics()
        assert states.empty(), "each state once"
        assert (stats.brokers, stats.brokers_up, stats.gaps, stats.duplicates) == (2, 2, 0, 0)
    finally:
        await hub.close()


async def check_aiopubsub(run: Running, ws: Workspace) -> None:
    assert await run.exit_code() == 0, run.output()
    assert run.lines[-1] == "('some', 'namespace', 'x') {'data': 42}"


async def check_strategy(run: Running, ws: Workspace) -> None:
    await run.line("tickbus run ready")
    hub = await actors.connect(ws.frontend, ws.backend, name="docs")
    try:
        orders = await _receive(hub, ("order", "*"))
        await hub.sync()
        await hub.wait_for_subscribers(("signal", "AAPL"), timeout=TIMEOUT)
        hub.publish(actors.Key("signal", "AAPL"), {"side": "buy"})
        assert await _next(orders, "order") == (("order", "AAPL"), {"qty": 100, "ok": True})
    finally:
        await hub.close()


async def check_security(run: Running, ws: Workspace) -> None:
    await run.line("tickbus run ready")
    keys = ws.path / "etc/tickbus/keys"
    curve = actors.ClientCurve.from_files(keys / "broker.key", keys / "host-b.key_secret")
    hub = await actors.connect(ws.frontend, ws.backend, name="docs", curve=curve, wait=TIMEOUT)
    try:
        snapshots = await _receive(hub, ("ui", "snapshot"))
        await hub.sync(timeout=TIMEOUT)
        await _next(snapshots, "ui snapshot through the CURVE broker")
    finally:
        await hub.close()


async def check_keys(run: Running, ws: Workspace) -> None:
    assert await run.exit_code() == 0, run.output()
    keys = ws.path / "etc/tickbus/keys"
    assert (keys / "host-b.key").is_file()
    assert (keys / "host-b.key_secret").stat().st_mode & 0o777 == 0o640


async def check_broker_keys(run: Running, ws: Workspace) -> None:
    assert await run.exit_code() == 0, run.output()
    keys = ws.path / "etc/tickbus/keys"
    assert (keys / "broker.key_secret").is_file()
    assert (keys / "allowed").is_dir()


CHECKS: dict[str, Callable[[Running, Workspace], Awaitable[None]]] = {
    "venv": check_venv,
    "model": check_model,
    "pair": check_pair,
    "aiopubsub": check_aiopubsub,
    "strategy": check_strategy,
    "security": check_security,
    "keys": check_keys,
    "broker-keys": check_broker_keys,
}
NEEDS_BROKER = {"aiopubsub"}  # blocks the page runs against the broker an earlier block started


# -- the tests ------------------------------------------------------------------------------------------


def test_every_code_block_says_how_it_is_tested():
    missing = [f"{b} ({b.lang or 'no language'})" for b in ALL if not b.kind]
    assert not missing, f"code blocks without a <!-- docs-test: ... --> comment: {missing}"
    runs = [b.argument for b in ALL if b.kind == "run"]
    assert sorted(runs) == sorted(CHECKS), "every run block has one check and every check one block"
    assert all(b.lang in ("sh", "python") for b in ALL if b.kind == "run")
    skips = [b for b in ALL if b.kind == "skip"]
    assert all(re.fullmatch(r"\(.+\)", b.argument) for b in skips), "a skip says why, in brackets"
    assert len(skips) <= 10, "keep skipped blocks few"


@pytest.mark.parametrize("block", [b for b in ALL if b.kind == "skip"], ids=str)
def test_skipped_block(block: Block):
    pytest.skip(f"{block}: {block.argument[1:-1]}")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CHECKS), ids=str)
async def test_run_block(name: str, workspace: Workspace, run_block: Callable[..., Running]):
    block = _run_block(name)
    with contextlib.ExitStack() as stack:
        if name in NEEDS_BROKER:
            stack.enter_context(
                BrokerProcess.start([workspace.frontend], [workspace.backend], timeout=TIMEOUT)
            )
        running = run_block(name)
        try:
            await CHECKS[name](running, workspace)
        finally:
            print(f"--- {block} ({name}) output:\n{running.output()}")
            running.kill()


def test_readme_permissions_file_loads_in_a_curve_broker(workspace: Workspace):
    keys = workspace.path / "keys"
    subprocess.run(
        [BIN / "tickbus", "keys", "generate", "broker", "--dir", keys],
        env=workspace.env(),
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    permissions = workspace.path / "etc/tickbus/keys/permissions.toml"
    (keys / "allowed").mkdir()
    extra = ["--curve-secret", str(keys / "broker.key_secret"), "--allow-dir", str(keys / "allowed")]
    # the broker validates the file at start: a wrong table or field and it exits 2 without "ready"
    with BrokerProcess.start(
        extra_args=[*extra, "--permissions", str(permissions)], timeout=TIMEOUT
    ) as broker:
        assert broker.proc.poll() is None


def _start(ws: Workspace, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A ``tickbus`` command in its own session, its merged output kept for the teardown to print."""
    return subprocess.Popen(
        [BIN / "tickbus", *args],
        env=env or ws.env(),
        cwd=ws.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _env_file(path: Path) -> dict[str, str]:
    lines = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value.split("#")[0].strip() for key, value in lines}


@pytest.mark.slow
@pytest.mark.parametrize("pair", [False, True], ids=["one broker", "a broker pair"])
async def test_deploy_steps_1b_to_3_run_staged(
    workspace: Workspace, run_block: Callable[..., Running], pair: bool
):
    """deploy/README.md's files and key steps on one host: the broker from broker.toml (CURVE, the
    allow-list) with the permissions file, the ``model`` group from groups/model.toml with tickbus.env;
    with ``pair``, also the second broker host's broker.toml (the same key pair) and the group's
    tickbus.env of "Two broker hosts", so the group and the check connect to both brokers."""
    ws = workspace
    for name in ("keys", "broker-keys"):
        running = run_block(name)
        await CHECKS[name](running, ws)
    etc = ws.path / "etc/tickbus"
    shutil.copy(etc / "keys/host-b.key", etc / "keys/allowed/")  # the page's scp from server B
    permissions = ("--permissions", etc / "keys/permissions.toml")
    started = [_start(ws, "broker", "--config", etc / "broker.toml", *permissions)]
    env_file = _env_file(etc / "tickbus.env")
    if pair:  # server D's broker, with server A's keys (here the same files: the page's copy is done)
        started.append(
            _start(ws, "broker", "--config", ws.path / "server-d/etc/tickbus/broker.toml", *permissions)
        )
        env_file |= _env_file(ws.path / "pair/etc/tickbus/tickbus.env")
    started.append(_start(ws, "run", "--config", etc / "groups/model.toml", env=ws.env(**env_file)))
    curve = actors.ClientCurve.from_files(
        env_file["TICKBUS_CURVE_SERVERKEY"], env_file["TICKBUS_CURVE_SECRET"]
    )
    hub = None
    try:
        hub = await actors.connect(
            env_file["TICKBUS_FRONTEND"],
            env_file["TICKBUS_BACKEND"],
            name="profiler",
            curve=curve,
            wait=TIMEOUT,
        )
        hello = await _receive(hub, ("$actors", "hello", "model"))
        group_stats = await _receive(hub, ("$actors", "stats", "model"))
        await hub.sync(timeout=TIMEOUT)
        _, announcement = await _next(
            hello, "the model group's hello through a CURVE broker with permissions"
        )
        assert announcement["classes"] == ["mypkg.model:Model"]
        brokers = 2 if pair else 1
        while (await _next(group_stats, f"the group on {brokers} broker(s)"))[1]["hub"][
            "brokers_up"
        ] < brokers:
            pass  # the group reports its hub's statistics every second
        await eventually(lambda: hub.statistics().brokers_up == brokers, TIMEOUT, "this hub on every broker")
    finally:
        if hub is not None:
            await hub.close()
        for proc in reversed(started):
            proc.terminate()
            try:
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            print(f"--- {proc.args[1]} output:\n{out}")
