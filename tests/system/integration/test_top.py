"""`tickbus top` against a real broker and a real `tickbus run` group with traffic: the ``--once`` frame,
and the live view in a real terminal (tmux): rows appear, ``s`` changes the sort, ``q`` quits."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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


@pytest.mark.slow
def test_top_in_a_real_terminal_shows_rows_sorts_on_s_and_quits_on_q(bus) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (tests/ensure_system_deps.sh installs it as root with apt-get)")
    tmp = tempfile.TemporaryDirectory(prefix="tickbus-top-")
    socket_name = f"tickbus-top-{os.getpid()}"  # a server of our own: no other session is touched
    exit_file = Path(tmp.name) / "exit"
    env = f"PYTHONPATH={shlex.quote(str(ROOT))} TERM=xterm-256color"
    # -u: under pytest the pane's environment says COLUMNS=80 LINES=24, which rich would believe
    inner = f"env -u COLUMNS -u LINES {env} {shlex.join(top_command(bus))}; echo $? > {shlex.quote(str(exit_file))}"
    tmux = ["tmux", "-L", socket_name]
    try:
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", "top", "-x", "160", "-y", "40", inner], check=True, timeout=10
        )

        def screen() -> str:
            done = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "top"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            return done.stdout

        def rates_known(text: str) -> bool:
            sink = actor_line(text, "zsink")
            return bool(sink and actor_line(text, "feed") and (rate(sink) or 0) > 0)

        first = poll(screen, rates_known, 30, "the actor rows with rates did not appear")
        assert "sorted by group" in first
        lines = first.splitlines()
        assert lines.index(actor_line(first, "feed")) < lines.index(actor_line(first, "zsink"))  # name order
        assert "broker:" in first

        subprocess.run([*tmux, "send-keys", "-t", "top", "s"], check=True, timeout=10)

        def sorted_by_rate(text: str) -> bool:
            feed, sink = actor_line(text, "feed"), actor_line(text, "zsink")
            lines = text.splitlines()
            return "sorted by in/s" in text and bool(feed and sink) and lines.index(sink) < lines.index(feed)

        poll(screen, sorted_by_rate, 10, "pressing s did not sort the actors by in/s")

        subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True, timeout=10)
        poll(
            lambda: exit_file.read_text() if exit_file.exists() else "", bool, 10, "q did not end tickbus top"
        )
        assert exit_file.read_text().strip() == "0"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10, check=False)
        tmp.cleanup()
