"""``tickbus profile windows|top`` on a store written here, and the commands' one-line errors."""

from __future__ import annotations

import contextlib
import re

import pytest

from observability.profiling import ProfileStore, ProfileWindow, WindowLabels, short_function
from tickbus._cli import main

HANDLER = "/srv/app/busy.py:Busy.on_work"


@pytest.fixture
def data_dir(tmp_path):
    with ProfileStore(tmp_path / "profiles.sqlite") as store:
        for i, (group, pid) in enumerate([("busy", 10), ("busy", 11), ("quiet", 12)]):
            labels = WindowLabels("h", group, pid, (group,), "2.0")
            stacks = {f"/srv/app/main.py:main;{HANDLER}": 8, "/srv/app/main.py:main": 2}
            store.add(
                ProfileWindow(labels, 1000.0 + 60 * i, 1060.0 + 60 * i, 10, 100_000, stacks, {group: 50})
            )
    return tmp_path


def test_windows_lists_one_line_per_window_with_its_top_self_function(data_dir, capsys):
    assert main(["profile", "windows", "--data-dir", str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID",
        "START",
        "SECONDS",
        "GROUP",
        "PID",
        "VERSION",
        "SAMPLES",
        "HANDLED",
        "TOP",
        "SELF",
    ]
    assert len(lines) == 4
    assert lines[1].split()[3:9] == ["60.0", "busy", "10", "2.0", "10", "50"]
    assert lines[1].endswith("80.0% Busy.on_work (app/busy.py)")


def test_top_merges_the_last_windows_of_an_actor_into_self_and_inclusive_shares(data_dir, capsys):
    assert main(["profile", "top", "--actor", "busy", "--data-dir", str(data_dir)]) == 0
    head, columns, first, second = capsys.readouterr().out.splitlines()
    assert head.startswith("2 window(s) of group busy (latest pid 11, version 2.0)")
    assert "20 samples, 0.20s CPU, 100 messages handled, 2000 µs CPU per message" in head
    assert columns.split() == ["SELF", "INCL", "SELF", "N", "INCL", "N", "FUNCTION"]
    assert first.split() == ["80.0%", "80.0%", "16", "16", "Busy.on_work", "(app/busy.py)"]
    assert second.split() == ["20.0%", "100.0%", "4", "20", "main", "(app/main.py)"]


def test_top_by_inclusive_share_puts_the_outermost_function_first(data_dir, capsys):
    assert main(["profile", "top", "--by", "inclusive", "--limit", "1", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("3 window(s) of group busy, quiet")
    assert len(out) == 3
    assert out[2].split()[-2:] == ["main", "(app/main.py)"]


def test_an_actor_without_windows_exits_one_saying_so(data_dir, capsys):
    assert main(["profile", "top", "--actor", "nobody", "--data-dir", str(data_dir)]) == 1
    assert f"no windows of 'nobody' in {data_dir / 'profiles.sqlite'}" in capsys.readouterr().err


def test_a_missing_store_exits_two_naming_it(tmp_path, capsys):
    assert main(["profile", "windows", "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tickbus profile: no profile store at")
    assert "start `tickbus profiler`" in err


def test_the_collector_refuses_a_window_that_is_not_positive(tmp_path, capsys):
    from loguru import logger

    said: list[str] = []  # the one-line failure goes to whatever sink an earlier test configured, too
    sink = logger.add(said.append, format="{message}")
    try:
        assert main(["profiler", "--window", "0", "--data-dir", str(tmp_path)]) == 2
    finally:
        with contextlib.suppress(ValueError):  # configuring logging (a fresh process) removed it
            logger.remove(sink)
    text = capsys.readouterr().err + "".join(said)
    assert "--window 0.0 and --interval-us 10000 must both be positive" in text


@pytest.mark.parametrize(
    ("label", "short"),
    [
        (
            "/venv/lib/python3.11/site-packages/zmq/sugar/socket.py:Socket.send",
            "Socket.send (zmq/sugar/socket.py)",
        ),
        ("/usr/lib/python3.11/asyncio/events.py:Handle._run", "Handle._run (asyncio/events.py)"),
        ("<no Python frames>", "<no Python frames>"),
    ],
)
def test_function_labels_are_shortened_for_tables(label, short):
    assert short_function(label) == short


def test_profile_status_shows_windows_collected_and_needed_and_when_detection_is_ready(tmp_path, capsys):
    import time

    from observability.profiling import DetectionConfig

    config = DetectionConfig()
    need = config.warm_up
    now = time.time()
    with ProfileStore(tmp_path / "profiles.sqlite") as store:
        stacks = {f"/srv/app/main.py:main;{HANDLER}": 80, "/srv/app/main.py:main": 20}
        for group, count in (("warming", 3), ("ready", need)):
            labels = WindowLabels("h", group, 7, (group,), "1.3")
            for i in range(count):
                end = now - 1 - 20.0 * (count - 1 - i)
                store.add(ProfileWindow(labels, end - 20.0, end, 100, 1_000_000, stacks, {group: 50}))
    assert main(["profile", "status", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["GROUP", "HOST", "VERSION", "WINDOWS", "DETECTION"]
    ready = next(line for line in lines if line.startswith("ready"))
    warming = next(line for line in lines if line.startswith("warming"))
    assert f"{need}/{need}" in ready and "ready: every new window is tested" in ready
    assert f"3/{need}" in warming
    # the windows still needed, 20 s each, from the last one's end, which was 1 s ago
    minutes, seconds = divmod(20 * (need - 3) - 1, 60)
    assert re.search(
        rf"in ~{minutes} min (?:{seconds - 1}|{seconds}) s \({need - 3} more window\(s\) of 20s\)", warming
    ), warming
    assert main(["profile", "status", "--actor", "nobody", "--data-dir", str(tmp_path)]) == 1
