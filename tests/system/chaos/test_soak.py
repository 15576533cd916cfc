"""``make soak`` itself: a short run of ``python -m bench.soak`` passes its own checks.

The hour-long soak is not part of ``make test``; this keeps its entry point from rotting (its
imports broke unnoticed when the chaos tier moved under ``tests/system``). Exact accounting and no
gaps are checked as in the real run; a 12 s run's memory has not settled, so it allows 50 % growth.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_a_short_soak_runs_and_accounts_for_every_message() -> None:
    argv = ["--minutes", "0.2", "--rate", "2000", "--actors", "2", "--max-growth", "0.5"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", *argv],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = done.stdout
    assert done.returncode == 0, f"soak failed ({done.returncode}):\n{out}\n{done.stderr[-3000:]}"
    assert "soak: PASS" in out, out
    accounted = [line for line in out.splitlines() if "received + gaps + drops" in line]
    assert len(accounted) == 2, out
    for line in accounted:
        assert "'gaps': 0" in line, line
        counted, published = line.split(" = ")[1].split(" (published ")
        assert int(counted) == int(published.rstrip(")")) > 0, line
