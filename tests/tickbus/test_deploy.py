"""`tickbus deploy install`: units, sysusers entry, configs and env files under a prefix; every unit
passes `systemd-analyze verify`; operator configs survive a reinstall; the example configs validate."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from actors import ConfigError, load_group_config
from observability import load_table
from tickbus._cli import main
from tickbus._deploy import UNITS, deploy_source, hidden_from_units, install

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent  # the venv's: it has a `tickbus` script


def test_every_unit_in_deploy_systemd_is_installed():
    assert sorted(p.name for p in (REPO / "deploy/systemd").glob("*.service")) == sorted(UNITS)
    assert deploy_source() == REPO / "deploy"


def test_install_writes_units_pointing_at_this_tickbus_and_every_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package 'systemd'); cannot verify the units")
    done = install(tmp_path, bin_dir=BIN_DIR)
    units = [tmp_path / "etc/systemd/system" / unit for unit in UNITS]
    assert set(units) <= set(done.written)
    for unit in units:
        assert f"ExecStart={BIN_DIR}/tickbus " in unit.read_text()
        assert "/opt/tickbus/bin" not in unit.read_text()
        result = subprocess.run(
            [analyze, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60
        )
        # verify exits 0 on unknown keys but prints them: both must be clean
        assert (result.returncode, result.stdout + result.stderr) == (0, ""), unit.name


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt key and a missing executable are reported."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package 'systemd'); cannot verify the units")
    text = (REPO / "deploy/systemd/tickbus-broker.service").read_text()
    broken = tmp_path / "tickbus-broker.service"
    broken.write_text(text.replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = subprocess.run(
        [analyze, "verify", str(broken)], check=False, capture_output=True, text=True, timeout=60
    )
    assert "Unknown key 'NoNewPrivilege'" in result.stderr
    assert "/opt/tickbus/bin/tickbus is not executable" in result.stderr
    assert result.returncode != 0


def test_the_collector_unit_keeps_ptrace_and_the_others_drop_every_capability():
    profiler = (REPO / "deploy/systemd/tickbus-profiler.service").read_text()
    assert "AmbientCapabilities=CAP_SYS_PTRACE\n" in profiler
    assert "CapabilityBoundingSet=CAP_SYS_PTRACE\n" in profiler
    for unit in ("tickbus-broker.service", "tickbus-actors@.service"):
        text = (REPO / "deploy/systemd" / unit).read_text()
        assert "CapabilityBoundingSet=\n" in text
        assert "AmbientCapabilities" not in text
    for unit in UNITS:
        text = (REPO / "deploy/systemd" / unit).read_text()
        for line in (
            "Type=notify",
            "WatchdogSec=",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
        ):
            assert line in text, (unit, line)


def test_reinstall_keeps_operator_configs_unless_forced(tmp_path):
    install(tmp_path, bin_dir=BIN_DIR)
    broker_toml = tmp_path / "etc/tickbus/broker.toml"
    broker_toml.write_text("[broker]\nhwm = 1\n")
    done = install(tmp_path, bin_dir=BIN_DIR)
    assert broker_toml in done.kept
    assert broker_toml.read_text() == "[broker]\nhwm = 1\n"
    install(tmp_path, bin_dir=BIN_DIR, force=True)
    assert broker_toml.read_text() == (REPO / "deploy/examples/broker.toml").read_text()
    assert (tmp_path / "etc/tickbus/tickbus.env").stat().st_mode & 0o777 == 0o640


def test_installed_example_configs_validate(tmp_path):
    install(tmp_path, bin_dir=BIN_DIR)
    etc = tmp_path / "etc/tickbus"
    assert load_table(etc / "broker.toml", "broker")["frontend"] == ["tcp://127.0.0.1:5550"]
    assert load_table(etc / "profiler.toml", "profiler")["mode"] == "cpu"
    assert load_group_config(etc / "groups/example.toml.sample").actors[0].target == "mypkg.model:Model"


def test_install_refuses_a_bin_dir_without_tickbus(tmp_path):
    with pytest.raises(ConfigError, match=r"is not an executable; give --bin-dir of the virtualenv"):
        install(tmp_path / "root", bin_dir=tmp_path)


def test_tickbus_deploy_install_command_prints_the_next_steps(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tickbus",
            "deploy",
            "install",
            "--prefix",
            str(tmp_path),
            "--bin-dir",
            str(BIN_DIR),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path}/etc/systemd/system/tickbus-actors@.service" in done.stdout
    assert "systemctl enable --now tickbus-broker tickbus-actors@GROUP tickbus-profiler" in done.stdout


def test_the_units_do_not_restart_on_a_configuration_error():
    for unit in UNITS:
        text = (REPO / "deploy/systemd" / unit).read_text()
        assert "Restart=on-failure" in text and "RestartPreventExitStatus=2" in text, unit


@pytest.mark.parametrize(
    ("path", "hidden"),
    [
        ("/home/alice/venv/bin", "ProtectHome=yes"),
        ("/root/tickbus/.venv/bin", "ProtectHome=yes"),
        ("/tmp/ci/main/.venv/bin", "PrivateTmp=yes"),
        ("/var/tmp/venv/bin", "PrivateTmp=yes"),
        ("/opt/tickbus/bin", None),
        ("/homework/bin", None),
    ],
)
def test_a_bin_dir_the_units_hide_is_named(path, hidden):
    why = hidden_from_units(Path(path))
    assert (why is None) if hidden is None else (hidden in why and "--bin-dir" in why)


def test_install_warns_when_the_units_could_not_see_the_bin_dir(tmp_path, capsys):
    bin_dir = tmp_path / "venv/bin"  # pytest's tmp_path is under /tmp: hidden by PrivateTmp=yes
    bin_dir.mkdir(parents=True)
    (bin_dir / "tickbus").write_text("#!/bin/sh\n")
    (bin_dir / "tickbus").chmod(0o755)
    assert str(tmp_path).startswith("/tmp/")
    done = install(tmp_path / "root", bin_dir=bin_dir)
    assert len(done.warnings) == 1 and "PrivateTmp=yes" in done.warnings[0]
    assert main(["deploy", "install", "--prefix", str(tmp_path / "root2"), "--bin-dir", str(bin_dir)]) == 0
    assert "warning: " in capsys.readouterr().err
