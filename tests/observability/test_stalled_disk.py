"""Trace and metrics files on a disk that stops taking writes (a frozen filesystem) never stop the
event loop or hold a flush or a shutdown past its timeout: the writes wait on a thread of their own,
and exports past its bound are dropped and counted."""

from __future__ import annotations

import asyncio
import json
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from loguru import logger

import observability

SPANS = 12_000  # past the writer's 64 queued exports of 64 spans and the loop's 2,048 queued spans


def _run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def freezable_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Path, Any, Any]]:
    """A data directory on a small ext4 filesystem of its own, and (freeze, thaw) for it: a frozen
    filesystem blocks every write until thawed, as a stalled disk does (fsfreeze)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem to freeze it needs root")
    missing = [tool for tool in ("mkfs.ext4", "fsfreeze", "mount", "umount") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no {', '.join(missing)} on this machine (util-linux, e2fsprogs)")
    image, mount = tmp_path / "disk.img", tmp_path / "mnt"
    mount.mkdir()
    with open(image, "wb") as file:
        file.truncate(32 << 20)
    made = _run("mkfs.ext4", "-q", "-F", image)
    assert made.returncode == 0, made.stderr
    mounted = _run("mount", "-o", "loop", image, mount)
    if mounted.returncode != 0:
        pytest.skip(f"this machine cannot loop-mount a file: {mounted.stderr.strip()}")
    frozen = [False]

    def freeze() -> None:
        result = _run("fsfreeze", "-f", mount)
        assert result.returncode == 0, result.stderr
        frozen[0] = True

    def thaw() -> None:
        if frozen[0]:
            _run("fsfreeze", "-u", mount)
            frozen[0] = False

    monkeypatch.setenv("TICKBUS_DATA_DIR", str(mount))
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield mount, freeze, thaw
    finally:
        thaw()  # first: a writer blocked on the frozen disk finishes, nothing stays in D state
        observability.disable_tracing()
        observability.metrics.disable()
        _run("umount", "-l", mount)


def test_a_stalled_trace_file_never_blocks_the_loop_and_accounts_for_every_span(freezable_data_dir):
    mount, freeze, thaw = freezable_data_dir
    observability.enable_tracing("stall", sampler="always_on", max_origin_spans_per_second=math.inf)
    tracer = observability.tracing.tracer
    assert tracer is not None
    file = Path(observability.tracing.statistics().file or "")
    assert file.parent == mount / "traces"
    freeze()
    done, ticks = threading.Event(), [0]

    async def scenario() -> None:
        async def tick() -> None:
            while True:
                ticks[0] += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.get_running_loop().create_task(tick())
        for i in range(SPANS):
            with tracer.start_as_current_span(f"work {i % 10}"):
                pass
            if i % 200 == 199:
                await asyncio.sleep(0.02)  # the loop drains an export slice every 0.2 s meanwhile
        before = ticks[0]
        await asyncio.sleep(0.5)  # a few more drains while the disk takes nothing
        assert ticks[0] > before  # the loop still runs its timers
        ticker.cancel()
        done.set()

    runner = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    runner.start()
    finished = done.wait(60)  # the loop writing the file itself blocked here until the thaw
    stalled = observability.tracing.statistics()
    thaw()
    runner.join(30)
    assert finished, "the event loop stopped while the trace file took no writes"
    assert stalled.spans_dropped > 0
    assert observability.tracing.flush(30)
    after = observability.tracing.statistics()
    written = sum(
        len(scope["spans"])
        for line in file.read_text().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
    )
    assert written > 0 and written + after.spans_dropped == SPANS  # each one written or counted


def test_metrics_on_a_stalled_disk_flush_and_stop_within_their_timeouts(freezable_data_dir):
    # the SDK's reader exported under its export lock: a write stuck on the disk held flush() and
    # shutdown() (tickbus run's drain, the process's exit) for as long as the disk stalled
    mount, freeze, thaw = freezable_data_dir
    from observability._rotation import WRITE_FAILURES

    metrics = observability.metrics
    metrics.enable("stall", interval=3600)
    file = Path(metrics.statistics().file or "")
    assert file.parent == mount / "metrics"
    assert metrics.flush(10)
    before = WRITE_FAILURES.get("metrics", 0)
    freeze()
    results: list[bool] = []
    flushing = threading.Thread(
        target=lambda: results.extend(metrics.flush(0.1) for _ in range(20)), daemon=True
    )
    flushing.start()
    flushing.join(60)  # 20 flushes of 0.1 s at most each
    assert not flushing.is_alive(), "a flush waited for the stalled disk past its timeout"
    assert results == [False] * 20  # none written
    assert WRITE_FAILURES.get("metrics", 0) > before  # past the 16 queued exports: dropped, counted
    stopping = threading.Thread(target=metrics.disable, kwargs={"timeout": 1.0}, daemon=True)
    stopping.start()
    stopping.join(30)
    assert not stopping.is_alive(), "disable() waited for the stalled disk past its timeout"
    thaw()
    for thread in threading.enumerate():  # the write the disk held finishes; nothing is written after
        if thread.name == "tickbus-metrics-writer":
            thread.join(30)
    lines = file.read_text().splitlines()
    assert lines and all(json.loads(line)["resourceMetrics"] for line in lines)  # no torn line


def test_tracing_and_metrics_enable_on_a_stalled_disk_and_write_once_it_answers(freezable_data_dir):
    # enable() opened its file on the calling thread: a process starting on a stalled disk (the
    # broker before READY, a group before its actors) waited for the disk, past systemd's start timeout
    mount, freeze, thaw = freezable_data_dir
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    freeze()
    enabled = threading.Event()

    def enable() -> None:
        observability.metrics.enable("stall", interval=3600)
        observability.enable_tracing("stall", sampler="always_on", max_origin_spans_per_second=math.inf)
        enabled.set()

    threading.Thread(target=enable, daemon=True).start()
    started = enabled.wait(30)
    logger.remove(sink)  # before any assertion: a failed start must not leave it collecting
    if not started:  # a start that waited for the disk ends with the thaw
        thaw()
    assert started, "enabling tracing and metrics waited for the stalled disk"
    # each file says so: the traces' warning is not taken for a repeat of the metrics' (one kind)
    stalled = sorted(line.split()[0] for line in warnings if "not opened within" in line)
    assert stalled == ["metrics", "traces"], warnings
    traces = Path(observability.tracing.statistics().file or "")
    metrics_file = Path(observability.metrics.statistics().file or "")
    assert traces.parent == mount / "traces" and metrics_file.parent == mount / "metrics"
    tracer = observability.tracing.tracer
    assert tracer is not None
    with tracer.start_as_current_span("while frozen"):
        pass
    thaw()
    assert observability.tracing.flush(30)
    assert observability.metrics.flush(30)
    spans = [
        span["name"]
        for line in traces.read_text().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    assert spans == ["while frozen"]
    assert all(json.loads(line)["resourceMetrics"] for line in metrics_file.read_text().splitlines())
    assert metrics_file.read_text()


def test_a_broker_on_a_stalled_disk_is_ready_and_forwards_then_writes_its_metrics(
    freezable_data_dir, tmp_path
):
    mount, freeze, thaw = freezable_data_dir
    freeze()
    stderr = tmp_path / "broker.log"  # off the frozen disk
    with open(stderr, "w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tickbus",
                "broker",
                "--frontend",
                "tcp://127.0.0.1:0",
                "--backend",
                "tcp://127.0.0.1:0",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "OTEL_METRIC_EXPORT_INTERVAL": "200"},
        )
    ctx = zmq.Context()
    try:
        with selectors.DefaultSelector() as selector:
            assert proc.stdout is not None
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = bool(selector.select(30)) and proc.stdout.readline()
        if not ready:
            thaw()  # the broker that waited for the disk goes on: its stderr says where it stood
        assert ready and ready.startswith("tickbus broker ready "), (
            f"not ready while the disk stalled: {stderr.read_text()}"
        )
        fields = dict(part.split("=", 1) for part in ready.split()[3:])
        pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
        pub.linger = sub.linger = 0
        pub.connect(fields["frontend"].split(",")[0])
        sub.connect(fields["backend"].split(",")[0])
        sub.subscribe(b"stall\0")
        got = None
        for _ in range(300):  # until the subscription reached the broker and the publisher
            pub.send(b"stall\0frozen")
            if sub.poll(100):
                got = sub.recv()
                break
        assert got == b"stall\0frozen", "the broker forwarded nothing while the disk stalled"
        said = "metrics file " + str(mount / "metrics" / "broker.jsonl") + " not opened within"
        deadline = time.monotonic() + 30
        while said not in stderr.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # the log's writer thread writes the WARNING
        assert said in stderr.read_text(), stderr.read_text()
        file = mount / "metrics" / "broker.jsonl"
        assert not file.exists() or not file.read_text()  # nothing could be written yet
        thaw()
        deadline = time.monotonic() + 30
        while not (file.exists() and file.read_text().endswith("\n")) and time.monotonic() < deadline:
            time.sleep(0.1)  # an export every 0.2 s, written by its thread once the disk answers
        lines = file.read_text().splitlines() if file.exists() else []
        assert lines and all(json.loads(line)["resourceMetrics"] for line in lines)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        thaw()
        ctx.destroy(linger=0)
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
