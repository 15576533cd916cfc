"""The [broker] and [profiler] tables of the one TOML format: validation that names the file, the key
and what is allowed; environment over file, flags over both; real `tickbus broker/profiler --config`."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from actors import ConfigError, load_group_config
from actors.testing import BrokerProcess, free_tcp_port
from observability import load_table
from tests.system.systemd.notify_listener import NotifyListener, service
from tickbus._broker_cli import add_parser as add_broker
from tickbus._cli import build_parser, group_config
from tickbus._profiler_cli import add_parsers as add_profiler
from tickbus._service_config import apply_command_config as _apply_command_config


def apply_command_config(args, command):
    """The command's config applied the way ``tickbus broker|profiler`` does."""
    return _apply_command_config(args, command, {"broker": add_broker, "profiler": add_profiler}[command])


def write(tmp_path: Path, text: str, name: str = "tickbus.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_broker_table_values_are_validated_and_keyed_by_option(tmp_path):
    path = write(
        tmp_path,
        '[broker]\nfrontend = "tcp://127.0.0.1:6000"\nbackend = ["tcp://127.0.0.1:6001", "ipc:///run/x"]\n'
        "hwm = 5\nheartbeat_ivl = 0.5\nmetrics_port = 0\nlvc = ['price.*']\n",
    )
    assert load_table(path, "broker") == {
        "frontend": ["tcp://127.0.0.1:6000"],
        "backend": ["tcp://127.0.0.1:6001", "ipc:///run/x"],
        "hwm": 5,
        "heartbeat_ivl": 0.5,
        "metrics_port": 0,
        "lvc": ["price.*"],
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[broker]\nhwn = 5\n",
            r"tickbus.toml: unknown key\(s\) broker.\['hwn'\]; allowed: \['allow_dir', 'backend', .*'hwm'",
        ),
        ("[broker]\nhwm = -1\n", r"tickbus.toml: broker.hwm = -1 must be an integer >= 0"),
        ("[broker]\nhwm = true\n", r"tickbus.toml: broker.hwm = True must be an integer >= 0"),
        (
            "[broker]\nfrontend = 'udp://x:1'\n",
            r"broker.frontend = 'udp://x:1': 'udp://x:1' is not a tcp:// or ipc://",
        ),
        ("[broker]\nmetrics_port = 70000\n", r"broker.metrics_port = 70000 must be an integer in 0..65535"),
        (
            "[broker]\nheartbeat_ivl = 'soon'\n",
            r"broker.heartbeat_ivl = 'soon' must be a number of seconds >= 0",
        ),
        (
            "[brokr]\n",
            r"tickbus.toml: unknown table\(s\) \['brokr'\]; allowed: \[group\], \[hub\], \[\[actor\]\], \[broker\], \[profiler\]",
        ),
        (
            "[group]\nname = 'x'\n",
            r"tickbus.toml: no \[broker\] table; `tickbus broker --config` reads \[broker\]",
        ),
        ("[broker\n", r"tickbus.toml: not valid TOML"),
    ],
)
def test_broker_table_errors_name_the_file_the_key_and_what_is_allowed(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_table(write(tmp_path, text), "broker")


def test_broker_table_carries_the_curve_settings(tmp_path, monkeypatch):
    path = write(tmp_path, "[broker]\ncurve_secret = '/k/broker.key_secret'\nallow_dir = '/k/allowed'\n")
    assert load_table(path, "broker") == {"curve_secret": "/k/broker.key_secret", "allow_dir": "/k/allowed"}
    monkeypatch.setenv("TICKBUS_BROKER_INSECURE", "true")
    args = apply_command_config(_parse("broker", "--config", str(path)), "broker")
    assert (args.curve_secret, args.allow_dir, args.insecure) == ("/k/broker.key_secret", "/k/allowed", True)
    with pytest.raises(ConfigError, match=r"broker.insecure = 'maybe' must be true or false"):
        load_table(write(tmp_path, "[broker]\ninsecure = 'maybe'\n"), "broker")


def test_profiler_table_errors_name_the_key_and_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"profiler.mode = 'gpu'; allowed: cpu, wall"):
        load_table(write(tmp_path, "[profiler]\nmode = 'gpu'\n"), "profiler")
    with pytest.raises(ConfigError, match=r"profiler.window = 0 must be a number of seconds > 0"):
        load_table(write(tmp_path, "[profiler]\nwindow = 0\n"), "profiler")


def test_profiler_scheduling_is_idle_unless_the_file_or_the_environment_says_normal(tmp_path, monkeypatch):
    assert _parse("profiler").scheduling == "idle"
    path = write(tmp_path, "[profiler]\nscheduling = 'normal'\n")
    assert apply_command_config(_parse("profiler", "--config", str(path)), "profiler").scheduling == "normal"
    monkeypatch.setenv("TICKBUS_PROFILER_SCHEDULING", "idle")
    assert apply_command_config(_parse("profiler", "--config", str(path)), "profiler").scheduling == "idle"
    with pytest.raises(ConfigError, match=r"profiler.scheduling = 'fifo'; allowed: idle, normal"):
        load_table(write(tmp_path, "[profiler]\nscheduling = 'fifo'\n"), "profiler")


def test_profiler_table_sets_the_alerts_file_and_webhook_and_the_environment_beats_it(tmp_path, monkeypatch):
    path = write(tmp_path, "[profiler]\nalerts_file = '/a/alerts.jsonl'\nwebhook = 'https://h/hook'\n")
    assert load_table(path, "profiler") == {
        "alerts_file": Path("/a/alerts.jsonl"),
        "webhook": "https://h/hook",
    }
    monkeypatch.setenv("TICKBUS_PROFILER_WEBHOOK", "http://other/hook")
    args = apply_command_config(_parse("profiler", "--config", str(path)), "profiler")
    assert (args.alerts_file, args.webhook) == (Path("/a/alerts.jsonl"), "http://other/hook")
    args = apply_command_config(
        _parse("profiler", "--config", str(path), "--webhook", "http://flag/"), "profiler"
    )
    assert args.webhook == "http://flag/"
    with pytest.raises(ConfigError, match=r"profiler.webhook = 'ftp://h' must be an http:// or https:// URL"):
        load_table(write(tmp_path, "[profiler]\nwebhook = 'ftp://h'\n"), "profiler")


def test_profiler_table_takes_a_broker_pair_as_a_list_or_a_comma_separated_string(tmp_path, monkeypatch):
    pair = "frontend = ['tcp://a:5550', 'tcp://b:5550']\nbackend = 'tcp://a:5551,tcp://b:5551'\n"
    path = write(tmp_path, "[profiler]\n" + pair)
    assert load_table(path, "profiler") == {
        "frontend": "tcp://a:5550,tcp://b:5550",  # as actors.connect and $TICKBUS_FRONTEND take it
        "backend": "tcp://a:5551,tcp://b:5551",
    }
    monkeypatch.setenv("TICKBUS_FRONTEND", "tcp://c:5550,tcp://d:5550")
    args = apply_command_config(_parse("profiler", "--config", str(path)), "profiler")
    assert (args.frontend, args.backend) == ("tcp://c:5550,tcp://d:5550", "tcp://a:5551,tcp://b:5551")
    bad = write(tmp_path, "[profiler]\nfrontend = 'tcp://a:5550,b:5550'\n", "bad.toml")
    with pytest.raises(ConfigError, match=r"frontend = .*'b:5550' is not a tcp:// or ipc:// endpoint"):
        load_table(bad, "profiler")


def test_one_file_holds_the_group_the_broker_and_the_profiler(tmp_path):
    path = write(
        tmp_path,
        "[broker]\nhwm = 7\n[profiler]\nwindow = 2.0\n[group]\nname = 'g'\n"
        "[[actor]]\nclass = 'tests.system.systemd.service_actors:Sink'\n",
    )
    assert load_group_config(path).name == "g"
    assert load_table(path, "broker") == {"hwm": 7}
    assert load_table(path, "profiler") == {"window": 2.0}


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_environment_overrides_the_file_and_a_flag_overrides_both(tmp_path, monkeypatch):
    path = write(tmp_path, "[broker]\nhwm = 5\nstats_interval = 2.0\nfrontend = 'tcp://127.0.0.1:6000'\n")
    monkeypatch.setenv("TICKBUS_BROKER_HWM", "6")
    monkeypatch.setenv("TICKBUS_BROKER_FRONTEND", "tcp://127.0.0.1:7000,ipc:///run/f")
    args = apply_command_config(_parse("broker", "--config", str(path), "--stats-interval", "3"), "broker")
    assert args.hwm == 6  # environment over file
    assert args.frontend == ["tcp://127.0.0.1:7000", "ipc:///run/f"]
    assert args.stats_interval == 3.0  # flag over file
    monkeypatch.setenv("TICKBUS_BROKER_HWM", "lots")
    with pytest.raises(
        ConfigError, match=r"environment: TICKBUS_BROKER_HWM = 'lots' must be an integer >= 0"
    ):
        apply_command_config(_parse("broker", "--config", str(path)), "broker")


def test_tickbus_run_takes_flags_over_the_environment_over_the_group_file(tmp_path):
    path = write(
        tmp_path,
        "[group]\nname = 'g'\nfrontend = 'tcp://file:1'\nbackend = 'tcp://file:2'\nversion = '1.4'\n"
        "drain_timeout = 3.0\n[[actor]]\nclass = 'tests.system.systemd.service_actors:Sink'\n",
    )
    env = {"TICKBUS_FRONTEND": "tcp://env:1", "TICKBUS_BACKEND": "tcp://env:2", "TICKBUS_GROUP_NAME": "e"}
    config = group_config(_parse("run", "--config", str(path)), env)
    assert (config.name, config.frontend, config.backend) == ("e", "tcp://env:1", "tcp://env:2")
    assert (config.version, config.drain_timeout) == ("1.4", 3.0), "the file's other keys stay"
    pair = ("--frontend", "tcp://a:1,tcp://b:1", "--backend", "tcp://a:2,tcp://b:2")
    config = group_config(_parse("run", "--config", str(path), *pair, "--name", "f"), env)
    assert (config.name, config.frontend, config.backend) == (
        "f",
        "tcp://a:1,tcp://b:1",
        "tcp://a:2,tcp://b:2",
    )
    assert [a.target for a in config.actors] == ["tests.system.systemd.service_actors:Sink"]
    config = group_config(_parse("run", "mypkg:A", *pair), env)  # no file: flags over the environment
    assert (config.name, config.frontend, config.backend) == (
        "e",
        "tcp://a:1,tcp://b:1",
        "tcp://a:2,tcp://b:2",
    )
    assert [a.target for a in config.actors] == ["mypkg:A"]
    with pytest.raises(ConfigError, match="give at least one module:Class or --config FILE"):
        group_config(_parse("run"), env)


def test_tickbus_broker_binds_the_endpoints_of_its_config_file(tmp_path):
    frontend, backend = f"tcp://127.0.0.1:{free_tcp_port()}", f"tcp://127.0.0.1:{free_tcp_port()}"
    path = write(
        tmp_path,
        f'[broker]\nfrontend = "{frontend}"\nbackend = ["{backend}"]\nstats_interval = 0.5\nlvc = ["price.*"]\n',
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKBUS_BROKER_")}
    argv = [sys.executable, "-m", "tickbus", "broker", "--config", str(path)]
    with service(argv, env, "tickbus broker ready") as (proc, line):
        assert line == f"tickbus broker ready frontend={frontend} backend={backend}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_tickbus_broker_with_a_bad_config_exits_two_naming_the_file_and_key(tmp_path):
    path = write(tmp_path, "[broker]\nhwm = 'many'\n")
    done = subprocess.run(
        [sys.executable, "-m", "tickbus", "broker", "--config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{path}: broker.hwm = 'many' must be an integer >= 0" in done.stderr


def test_tickbus_profiler_takes_its_store_from_the_config_file_and_notifies_ready(tmp_path):
    data = tmp_path / "data"
    with BrokerProcess.start() as broker:
        path = write(
            tmp_path,
            f'[profiler]\nfrontend = "{broker.frontend}"\nbackend = "{broker.backend}"\n'
            f'window = 1.0\ndata_dir = "{data}"\nscheduling = "normal"\n',
        )
        _run_profiler_under_notify(tmp_path, path, data)


def _run_profiler_under_notify(tmp_path: Path, path: Path, data: Path) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    env = {k: v for k, v in os.environ.items() if k != "TICKBUS_DATA_DIR"}  # it would beat the file
    env.update(NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="600000")
    argv = [sys.executable, "-m", "tickbus", "profiler", "--config", str(path)]
    try:
        with service(argv, env, "tickbus profiler ready") as (proc, line):
            assert line.endswith(f"store={data / 'profiles.sqlite'}")
            assert listener.wait_for("READY")["STATUS"] == line
            assert os.sched_getscheduler(proc.pid) == os.SCHED_OTHER  # the file's scheduling = "normal"
            listener.wait_for("WATCHDOG", timeout=5)
            proc.send_signal(signal.SIGTERM)
            listener.wait_for("STOPPING", timeout=10)
            assert proc.wait(30) == 0
    finally:
        listener.close()
