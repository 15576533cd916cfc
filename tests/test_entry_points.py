"""Every ``python -m`` entry point the Makefile runs starts: ``--help`` exits 0.

``make soak`` ran nothing for weeks (an import of a moved test module) because no test started it;
the targets that are not part of ``make test`` (bench, soak, demo-regression) are the ones that can
rot unseen. The list comes from the Makefile itself, so a new target is covered as it is added.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = sorted(
    set(re.findall(r"\$\(PY\) -m ([\w.]+)", (REPO / "Makefile").read_text())) - {"pip", "pytest"}
)


def test_the_makefile_names_the_entry_points() -> None:
    assert {"examples.demo", "examples.demo_regression", "bench.run", "bench.soak"} <= set(MODULES), MODULES


@pytest.mark.parametrize("module", MODULES)
def test_a_make_target_entry_point_starts(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"python -m {module} --help exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert "usage:" in done.stdout, done.stdout
