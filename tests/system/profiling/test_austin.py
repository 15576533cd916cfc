"""The Austin adapter against real Austin attached to real Python processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from observability import PtraceNotPermittedError, SamplerError
from observability.profiling import AustinSampler, StackFrame, parse_sample
from tests.system.profiling.conftest import BUSY_CHILD, start_child, stop_child

ROOT = Path(__file__).parents[3]


def test_parse_sample_reads_pid_thread_frames_and_cpu_time():
    sample = parse_sample("P42;T0:43;/a/m.py:<module>:5;/a/m.py:Worker.spin:12 10086")
    assert sample.pid == 42
    assert sample.thread == "0:43"
    assert sample.stack == (StackFrame("<module>", "/a/m.py", 5), StackFrame("Worker.spin", "/a/m.py", 12))
    assert sample.cpu_us == 10086


def test_parse_sample_accepts_a_thread_without_python_frames():
    assert parse_sample("P42;T0:43 250").stack == ()


@pytest.mark.parametrize("line", ["", "# austin: 3.7.0", "P42;T0:43;/a/m.py:f:1 lots", "Q1;T2 3"])
def test_parse_sample_rejects_lines_that_are_not_samples(line):
    with pytest.raises(SamplerError, match="not an Austin cpu sample line"):
        parse_sample(line)


async def test_austin_samples_a_busy_child_and_names_its_function_as_the_leaf(busy_child):
    sampler = AustinSampler(busy_child.pid)
    async with asyncio.timeout(15):
        async with contextlib.aclosing(sampler.samples()) as samples:
            async for sample in samples:
                if sample.stack and sample.stack[-1].function == "burn_cpu_for_profiler_tests":
                    break
    assert sample.pid == busy_child.pid
    assert sample.stack[-1].file == str(BUSY_CHILD)
    assert 0 < sample.cpu_us < 1_000_000
    stats = sampler.statistics()
    assert stats.austin_version.startswith("3.7")
    assert stats.python_version == sys.version.split()[0]
    assert not stats.running, "leaving the loop stops Austin"
    assert busy_child.poll() is None, "the target is never stopped"


async def test_run_returns_when_the_target_exits(busy_child):
    sampler = AustinSampler(busy_child.pid, interval_us=5_000)
    received = []
    async with asyncio.timeout(15):
        task = asyncio.create_task(sampler.run(received.append))
        await sampler.wait_ready()
        busy_child.kill()
        await asyncio.get_running_loop().run_in_executor(None, busy_child.wait, 10)
        await task
    assert received
    assert not sampler.statistics().running


async def test_stop_ends_sampling_and_leaves_the_target_running(busy_child):
    sampler = AustinSampler(busy_child.pid)
    async with asyncio.timeout(15):
        task = asyncio.create_task(sampler.run(lambda sample: None))
        await sampler.wait_ready()
        sampler.stop()
        await task
    assert busy_child.poll() is None
    assert not sampler.statistics().running


async def test_attaching_to_a_pid_that_is_gone_fails_naming_the_pid():
    proc = start_child()
    stop_child(proc)
    with pytest.raises(SamplerError, match=rf"Austin stopped sampling pid {proc.pid}.*[Cc]annot attach"):
        async with asyncio.timeout(15):
            await AustinSampler(proc.pid).run(lambda sample: None)


async def test_attaching_to_a_process_that_is_not_python_says_so(sleeper):
    with pytest.raises(SamplerError, match="not a Python process"):
        async with asyncio.timeout(15):
            await AustinSampler(sleeper.pid).run(lambda sample: None)


_AS_NOBODY = """
import asyncio, sys
from observability import AustinSampler, PtraceNotPermittedError
try:
    asyncio.run(AustinSampler(int(sys.argv[1])).run(lambda sample: None))
except PtraceNotPermittedError as exc:
    print("PtraceNotPermittedError:", exc)
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to drop to user nobody"
)
def test_without_ptrace_permission_the_error_says_how_to_allow_it(busy_child):
    # Austin run as nobody against a root process: the kernel refuses, Austin blames "not a Python
    # process"; the adapter must tell the real reason and the fix.
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        + [sys.executable, "-c", _AS_NOBODY, str(busy_child.pid)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "HOME": "/tmp", "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert "PtraceNotPermittedError:" in result.stdout, result.stderr[-2000:]
    assert f"memory of process {busy_child.pid}" in result.stdout
    assert "CAP_SYS_PTRACE" in result.stdout
    assert "kernel.yama.ptrace_scope" in result.stdout
    assert issubclass(PtraceNotPermittedError, PermissionError)
