"""Bounded export files: the real OTLP JSON lines exporters write through a rotating file that
rotates by size and keeps rotated files by count and age, for metrics and for traces."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import observability
from observability import ConfigError, RotatingFile, Rotation

ROTATED = re.compile(r".*\.\d{8}T\d{12}Z\.jsonl")


@pytest.fixture
def metrics() -> Iterator[observability.Metrics]:
    m = observability.Metrics()
    yield m
    m.disable()


def lines_of(paths: list[Path]) -> list[dict[str, object]]:
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def test_the_metrics_file_rotates_by_size_and_keeps_the_newest_rotated_files(metrics, tmp_path):
    path = tmp_path / "m.jsonl"
    rotation = Rotation(max_bytes=4096, keep=2, max_age_days=0)
    metrics.enable("unit", otlp_file=path, interval=3600, rotation=rotation)
    sizes = []
    for _ in range(12):
        assert metrics.flush()
        sizes.append(path.stat().st_size)
    rotated = sorted(p for p in tmp_path.iterdir() if ROTATED.fullmatch(p.name))
    assert len(rotated) == 2, [p.name for p in tmp_path.iterdir()]
    one_export = min(sizes)
    assert all(p.stat().st_size <= 4096 + one_export for p in [*rotated, path])
    exported = lines_of([*rotated, path])
    assert exported and all("resourceMetrics" in line for line in exported)


def test_trace_files_rotate_and_retention_covers_the_service_s_earlier_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKBUS_DATA_DIR", str(tmp_path))
    folder = tmp_path / "traces"
    folder.mkdir()
    dead_pid = 2**22 + 12345  # above pid_max's default range: no such process
    old = time.time() - 30 * 86400
    stale = [folder / f"feed-{dead_pid}.jsonl", folder / f"feed-{dead_pid}.20260101T000000000000Z.jsonl"]
    live = folder / "feed-1.jsonl"  # pid 1 runs: its file is someone's current file
    other = folder / f"model-{dead_pid}.jsonl"  # another service's: not this one's to prune
    for path in [*stale, live, other]:
        path.write_text("{}\n")
        os.utime(path, (old, old))
    observability.enable_tracing(
        "feed", sampler="always_on", rotation=Rotation(max_bytes=2048, keep=3, max_age_days=7)
    )
    try:
        assert not any(p.exists() for p in stale), "older than 7 days: deleted when the file opened"
        assert live.exists() and other.exists()
        tracer = observability.tracing.tracer
        assert tracer is not None
        for batch in range(10):
            for i in range(20):
                tracer.start_span(f"span {batch}.{i}", attributes={"pad": "x" * 50}).end()
            assert observability.tracing.flush(10)
    finally:
        observability.disable_tracing()
    mine = sorted(p for p in folder.iterdir() if p.name.startswith(f"feed-{os.getpid()}."))
    assert len(mine) == 1 + 3, [p.name for p in folder.iterdir()]  # the current file and 3 rotated
    assert set(mine) <= set(observability.trace_files(tmp_path)), "tickbus trace reads rotated files"
    names = {span.name for span in observability.read_spans(mine)}
    assert "span 9.19" in names


def test_rotation_limits_come_from_the_environment_and_bad_values_name_the_variable():
    assert Rotation.from_environment({}) == Rotation()
    custom = Rotation.from_environment(
        {"TICKBUS_EXPORT_MAX_BYTES": "1000", "TICKBUS_EXPORT_KEEP": "0", "TICKBUS_EXPORT_MAX_AGE_DAYS": "1.5"}
    )
    assert custom == Rotation(max_bytes=1000, keep=0, max_age_days=1.5)
    with pytest.raises(ConfigError, match=r"TICKBUS_EXPORT_KEEP='-3' must be a number >= 0"):
        Rotation.from_environment({"TICKBUS_EXPORT_KEEP": "-3"})
    with pytest.raises(ConfigError, match=r"TICKBUS_EXPORT_MAX_BYTES='64M' must be a number >= 0"):
        Rotation.from_environment({"TICKBUS_EXPORT_MAX_BYTES": "64M"})


def test_a_rotating_file_never_splits_a_line_and_zero_limits_turn_rotation_off(tmp_path):
    stream = RotatingFile(tmp_path / "x.jsonl", Rotation(max_bytes=0, keep=0, max_age_days=0))
    for i in range(100):
        stream.write(json.dumps({"i": i, "pad": "é" * 40}) + "\n")
    stream.close()
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]
    stream = RotatingFile(tmp_path / "x.jsonl", Rotation(max_bytes=500, keep=0, max_age_days=0))
    for i in range(100, 110):
        stream.write(json.dumps({"i": i, "pad": "é" * 40}) + "\n")
    stream.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 + stream.rotations and stream.rotations >= 9
    assert sorted(e["i"] for e in lines_of(files)) == list(range(110))  # keep=0: every rotated file stays
