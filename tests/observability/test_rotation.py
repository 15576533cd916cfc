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

from ._otlp import sum_by_attribute

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


def test_a_full_disk_fails_the_write_counted_and_closing_does_not_raise(tmp_path):
    # /dev/full: every write fails with ENOSPC. Buffered, the failed export stayed in the buffer and
    # close() raised it again at shutdown (a group's exit ended in a traceback, metrics not stopped)
    path = tmp_path / "m.jsonl"
    path.symlink_to("/dev/full")
    stream = RotatingFile(path, Rotation(max_bytes=0))
    for _ in range(3):
        with pytest.raises(OSError, match="No space left"):
            stream.write('{"line": 1}\n')
        stream.flush()
    assert stream.failures == 3
    stream.close()
    assert stream.closed


def test_a_file_deleted_under_the_stream_is_opened_anew_directory_and_all(tmp_path, monkeypatch):
    # its directory removed (a cleanup, an operator): the writes went into the deleted file for good
    monkeypatch.setattr("observability._rotation._CHECK_EVERY", 0.0)
    path = tmp_path / "data" / "metrics" / "m.jsonl"
    path.parent.mkdir(parents=True)
    stream = RotatingFile(path, Rotation(max_bytes=0))
    stream.write('{"n": 1}\n')
    for entry in sorted(tmp_path.joinpath("data").rglob("*"), reverse=True):
        entry.unlink() if entry.is_file() else entry.rmdir()
    tmp_path.joinpath("data").rmdir()
    stream.write('{"n": 2}\n')
    assert path.read_text() == '{"n": 2}\n' and stream.reopened == 1 and stream.failures == 0
    stream.close()


def test_a_failed_write_leaves_no_torn_line_for_the_next_export(tmp_path):
    path = tmp_path / "m.jsonl"
    stream = RotatingFile(path, Rotation(max_bytes=0))
    stream.write('{"n": 1}\n')
    real = stream._file

    class HalfThenFull:  # the disk fills up halfway through an export's line
        def __init__(self) -> None:
            self.calls = 0

        def write(self, data: memoryview) -> int:
            self.calls += 1
            if self.calls == 1:
                return real.write(bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    stream._file = HalfThenFull()  # type: ignore[assignment]
    with pytest.raises(OSError):
        stream.write('{"n": 2, "padding": "' + "x" * 100 + '"}\n')
    stream._file = real
    stream.write('{"n": 3}\n')
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [1, 3]
    assert stream.failures == 1
    stream.close()


def test_failed_export_writes_are_exported_as_a_metric_by_signal(metrics, tmp_path):
    from observability._rotation import WRITE_FAILURES

    before = WRITE_FAILURES.get("traces", 0)
    full = tmp_path / "t.jsonl"
    full.symlink_to("/dev/full")
    stream = RotatingFile(full, Rotation(max_bytes=0), signal="traces")
    with pytest.raises(OSError):
        stream.write("{}\n")
    stream.close()
    path = tmp_path / "m.jsonl"
    metrics.enable("unit", otlp_file=path, interval=3600)
    assert metrics.flush()
    (line,) = [json.loads(text) for text in path.read_text().splitlines()]
    by_signal = sum_by_attribute(line, "tickbus.export.failures")
    assert by_signal["traces"] == before + 1


def test_a_file_opened_on_its_own_thread_writes_as_one_opened_at_once(tmp_path):
    stream = RotatingFile(tmp_path / "new" / "x.jsonl", Rotation(max_bytes=0), open_timeout=10.0)
    assert not stream.opening  # a disk that answers: opened within the wait
    stream.write('{"a": 1}\n')
    stream.close()
    assert (tmp_path / "new" / "x.jsonl").read_text() == '{"a": 1}\n'


def test_a_file_that_cannot_be_opened_within_the_wait_fails_as_before(tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(OSError):
        RotatingFile(tmp_path / "not-a-dir" / "x.jsonl", open_timeout=10.0)
