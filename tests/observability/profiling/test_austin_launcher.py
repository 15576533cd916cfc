"""The launcher that starts Austin unable to open files for writing (its syslog lines off the console)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from observability.profiling._austin import quiet_launcher
from observability.profiling._austin_exec import read_only_filter

needs_console = pytest.mark.skipif(
    not os.access("/dev/console", os.W_OK),
    reason="Austin is only started under the filter where this process may write to /dev/console (root)",
)


@needs_console
def test_the_quiet_launcher_lets_its_program_read_files_but_not_open_one_for_writing(tmp_path):
    # The launcher runs any program under the filter; Python as the program shows what Austin gets.
    launcher = quiet_launcher(Path(sys.executable))
    assert launcher is not None
    target = tmp_path / "written"
    probe = (
        "import os, sys\n"
        "print(len(open(sys.argv[1]).read()) > 0)\n"
        "for path in ('/dev/console', sys.argv[2]):\n"
        "    try:\n"
        "        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))\n"
        "        print('opened', path)\n"
        "    except PermissionError:\n"
        "        print('refused', path)\n"
        "print(open('/proc/self/status').read().split('Seccomp:')[1].split()[0])\n"
    )
    out = subprocess.run(
        [str(launcher), "-I", "-c", probe, __file__, str(target)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["True", "refused /dev/console", f"refused {target}", "2", ""]
    assert not target.exists()


@needs_console
def test_the_quiet_launcher_is_written_again_when_a_tmp_cleaner_removed_it():
    launcher = quiet_launcher(Path(sys.executable))
    assert launcher is not None
    assert quiet_launcher(Path(sys.executable)) == launcher, "written once while it is there"
    launcher.unlink()
    again = quiet_launcher(Path(sys.executable))
    assert again is not None
    assert again.is_file()
    assert os.access(again, os.X_OK)


def test_the_filter_is_twelve_instructions_for_the_machines_it_knows_and_none_for_others():
    for machine in ("x86_64", "aarch64"):
        program = read_only_filter(machine)
        assert program is not None
        assert len(program) == 12 * 8
    assert read_only_filter("riscv64") is None


@needs_console
def test_a_launcher_that_cannot_be_written_leaves_no_directory_and_no_exit_handler(tmp_path, monkeypatch):
    # a full disk: each sampler restart tried again, leaving a directory and an atexit handler
    import atexit
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    registered: list[object] = []
    monkeypatch.setattr(atexit, "register", lambda *args, **kw: registered.append(args))

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    binary = tmp_path / "not-austin"
    for _ in range(3):
        assert quiet_launcher(binary) is None
    assert list(tmp_path.iterdir()) == [] and registered == []
