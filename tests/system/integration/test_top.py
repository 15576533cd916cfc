"""`tickbus top` against a real broker and a real `tickbus run` group with traffic: the ``--once`` frame,
and the live view in a real terminal (tmux): rows appear, ``s`` changes the sort, ``q`` quits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import actors
from actors.testing import ActorProcess, BrokerProcess

GROUP = "topgroup"
TARGETS = ("tests.system.integration.top_actors:Feed", "tests.system.integration.top_actors:Sink")
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def bus() -> Iterator[BrokerProcess]:
    with BrokerProcess.start() as broker:
        group = ActorProcess.launch(broker, *TARGETS, name=GROUP)
        try:
            yield broker
        finally:
            group.close()


def top_command(broker: BrokerProcess, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tickbus",
        "top",
        "--frontend",
        broker.frontend,
        "--backend",
        broker.backend,
        *extra,
    ]


def rate(line: str) -> float | None:
    """The in/s column of an actor row (``group actor in/s ...``), None when it shows ``-``."""
    fields = line.split()
    return (
        None
        if fields[2] == "-"
        else float(fields[2].removesuffix("k")) * (1000 if fields[2].endswith("k") else 1)
    )


def actor_line(screen: str, actor: str) -> str | None:
    return next((ln for ln in screen.splitlines() if re.match(rf"\s*{GROUP}\s+{actor}\b", ln)), None)


@pytest.mark.slow
def test_top_once_prints_a_plain_frame_naming_the_group_its_actors_and_the_broker_totals(bus) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        top_command(bus, "--once", "--wait", "2.5"),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    frame = done.stdout
    assert "\x1b" not in frame
    assert re.search(r"broker: \S+ msgs/s .* forwarded \d+\s+publishers \d+\s+subscribers \d+", frame), frame
    group = next(ln for ln in frame.splitlines() if ln.split()[:2] == [GROUP, "up"])
    assert str(bus.frontend) in frame and group
    feed, sink = actor_line(frame, "feed"), actor_line(frame, "zsink")
    assert feed and sink, frame
    sink_rate = rate(sink)
    assert sink_rate is not None and sink_rate > 10, frame  # the feed publishes ~100/s
    assert re.search(r"\d+(ns|µs|ms)", sink), sink  # handler time percentiles from the timing buckets
    assert "no slow consumers, no active profile alerts" in frame


def test_top_once_fails_clearly_without_a_broker() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickbus", "top", "--once", "--connect-timeout", "0.5"]
        + ["--frontend", "tcp://127.0.0.1:9", "--backend", "tcp://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 69  # EX_UNAVAILABLE: no broker answered (a restart may help, unlike 2)
    assert done.stderr.startswith("tickbus top: "), done.stderr


def poll(read: Callable[[], str], ok: Callable[[str], bool], timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = read()
        if ok(screen):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s; last screen:\n{screen}")
        time.sleep(0.1)


@dataclass
class Terminal:
    """``tickbus top`` running in a tmux pane of its own: read the screen, type keys, read the exit code."""

    tmux: list[str]
    exit_file: Path

    def screen(self) -> str:
        done = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", "top"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout

    def keys(self, keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "top", keys], check=True, timeout=10)

    def exit_code(self) -> str:
        return self.exit_file.read_text().strip() if self.exit_file.exists() else ""


@contextlib.contextmanager
def top_in_tmux(broker: BrokerProcess) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (tests/ensure_system_deps.sh installs it as root with apt-get)")
    tmp = tempfile.TemporaryDirectory(prefix="tickbus-top-")
    socket_name = f"tickbus-top-{os.getpid()}"  # a server of our own: no other session is touched
    exit_file = Path(tmp.name) / "exit"
    env = f"PYTHONPATH={shlex.quote(str(ROOT))} TERM=xterm-256color"
    # -u: under pytest the pane's environment says COLUMNS=80 LINES=24, which rich would believe
    inner = f"env -u COLUMNS -u LINES {env} {shlex.join(top_command(broker))}; echo $? > {shlex.quote(str(exit_file))}"
    tmux = ["tmux", "-L", socket_name]
    try:
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", "top", "-x", "160", "-y", "40", inner], check=True, timeout=10
        )
        yield Terminal(tmux, exit_file)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10, check=False)
        tmp.cleanup()


@pytest.mark.slow
def test_top_in_a_real_terminal_shows_rows_sorts_on_s_and_quits_on_q(bus) -> None:
    with top_in_tmux(bus) as terminal:

        def rates_known(text: str) -> bool:
            sink = actor_line(text, "zsink")
            return bool(sink and actor_line(text, "feed") and (rate(sink) or 0) > 0)

        first = poll(terminal.screen, rates_known, 30, "the actor rows with rates did not appear")
        assert "sorted by group" in first
        lines = first.splitlines()
        assert lines.index(actor_line(first, "feed")) < lines.index(actor_line(first, "zsink"))  # name order
        assert "broker:" in first

        terminal.keys("s")

        def sorted_by_rate(text: str) -> bool:
            feed, sink = actor_line(text, "feed"), actor_line(text, "zsink")
            lines = text.splitlines()
            return "sorted by in/s" in text and bool(feed and sink) and lines.index(sink) < lines.index(feed)

        poll(terminal.screen, sorted_by_rate, 10, "pressing s did not sort the actors by in/s")

        terminal.keys("q")
        poll(terminal.exit_code, bool, 10, "q did not end tickbus top")
        assert terminal.exit_code() == "0"


# What a peer on the bus may announce: names that are rich markup or terminal escape sequences, a
# slow notice whose lag is not a number, a flood of alerts (tickbus top exited on each of these).
HOSTILE_GROUPS = {
    "g[/x]": "[bold red]H",
    "[link=https://evil.example]ok[/link]": "h2",
    "\x1b[2J\x1b]8;;https://evil.example\x07clear": "\x1b[31mred",
}


async def hostile_peer(broker: BrokerProcess, stop: asyncio.Event) -> None:
    """Announce the hostile groups, a slow hub and 2,000 alerts every 0.2 s until ``stop``."""
    hub = await actors.connect(broker.frontend, broker.backend, name="rogue")
    try:
        while not stop.is_set():
            for group, host in HOSTILE_GROUPS.items():
                hub.publish(actors.Key("$actors", "hello", group), {"host": host, "pid": 1})
            hub.publish(
                actors.Key("$bus", "slow", "[/hub]"), {"state": "slow", "lag_seconds": "x", "gaps": [1]}
            )
            for i in range(2_000):
                record = {"state": "active", "group": "g[/x]", "actor": "a", "function": f"f{i}[/b]"}
                hub.publish(actors.Key("$alerts", "profile", "a"), record)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        await hub.close()


def assert_shown_as_written(frame: str) -> None:
    for shown in ("g[/x]", "[bold red]H", "[link=https://evil.example]ok[/link]", "\\x1b[2J\\x1b]8;;"):
        assert shown in frame, f"{shown!r} not in\n{frame}"
    assert "slow consumer: [/hub] processing messages ?s old, ? gaps" in frame, frame
    assert re.search(r"ignored [1-9]\d*", frame), frame  # the alerts past the table's size


@pytest.mark.slow
async def test_top_once_shows_names_a_peer_chose_as_written_and_never_its_escape_codes(bus) -> None:
    stop = asyncio.Event()
    peer = asyncio.create_task(hostile_peer(bus, stop))
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        top = await asyncio.create_subprocess_exec(
            *top_command(bus, "--once", "--wait", "3"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(top.communicate(), 60)
    finally:
        stop.set()
        await peer
    assert top.returncode == 0, err.decode()[-2000:]
    frame = out.decode()
    assert "\x1b" not in frame
    assert_shown_as_written(frame)
    assert actor_line(frame, "zsink"), frame  # the real group is still there


@pytest.mark.slow
async def test_top_in_a_real_terminal_keeps_running_on_what_a_hostile_peer_announces(bus) -> None:
    stop = asyncio.Event()
    peer = asyncio.create_task(hostile_peer(bus, stop))
    try:
        with top_in_tmux(bus) as terminal:

            def hostile_shown(text: str) -> bool:
                return "[bold red]H" in text and "g[/x]" in text and "?s old" in text

            await asyncio.to_thread(
                poll, terminal.screen, hostile_shown, 30, "the hostile rows did not appear"
            )
            await asyncio.sleep(3)  # several redraws with them
            assert terminal.exit_code() == "", "tickbus top ended on what a peer sent"
            screen = terminal.screen()
            assert "[bold red]H" in screen and "frames failed" not in screen, screen
            terminal.keys("q")
            await asyncio.to_thread(poll, terminal.exit_code, bool, 10, "q did not end tickbus top")
            assert terminal.exit_code() == "0"
    finally:
        stop.set()
        await peer
