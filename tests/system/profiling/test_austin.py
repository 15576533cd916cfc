"""The Austin adapter against real Austin attached to real Python processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from observability import PtraceNotPermittedError, SamplerError
from observability.profiling import AustinSampler, StackFrame, austin_binary, parse_sample
from tests.system.profiling.conftest import BUSY_CHILD, start_child, stop_child


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


NOBODY = 65534


def _as_nobody(job: Callable[[], str], timeout: float) -> str:
    """What ``job()`` returns (or the traceback it raised) in a child forked from this process that
    dropped to user nobody.

    Forked, not started: a new unprivileged interpreter would need to read Python, the virtualenv and
    the project, wherever they are (a clone under /root: none of them); the fork has what it runs in
    memory already, and a ``job`` that runs a program must pass one nobody can read.
    """
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: it never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            os.chdir("/")
            result = job()
        except BaseException:
            result = traceback.format_exc()
        with contextlib.suppress(BaseException), os.fdopen(write_end, "wb") as pipe:
            pipe.write(result.encode())
        os._exit(0)
    os.close(write_end)
    out = bytearray()
    try:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            deadline = time.monotonic() + timeout
            while True:
                if not select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    os.kill(child, signal.SIGKILL)
                    raise AssertionError(f"the child as nobody did not finish within {timeout} s: {out!r}")
                chunk = pipe.read(65536)
                if not chunk:
                    break
                out += chunk
    finally:
        os.waitpid(child, 0)
    return out.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to user nobody")
def test_without_ptrace_permission_the_error_says_how_to_allow_it(busy_child):
    # Austin run as nobody against a root process: the kernel refuses, Austin blames "not a Python
    # process"; the adapter must tell the real reason and the fix. Nobody needs only the austin
    # binary (the rest is in the forked child's memory): a copy in a directory it can read.
    with tempfile.TemporaryDirectory(prefix="tickbus-austin-") as directory:
        os.chmod(directory, 0o755)
        austin = Path(directory) / "austin"
        shutil.copy(austin_binary(), austin)
        os.chmod(austin, 0o755)

        def sample() -> str:
            try:
                asyncio.run(
                    asyncio.wait_for(
                        AustinSampler(busy_child.pid, binary=austin).run(lambda sample: None), 15
                    )
                )
            except PtraceNotPermittedError as exc:
                return f"PtraceNotPermittedError: {exc}"
            return "Austin sampled the process"

        result = _as_nobody(sample, 30)
    assert result.startswith("PtraceNotPermittedError:"), result[-2000:]
    assert f"memory of process {busy_child.pid}" in result
    assert "CAP_SYS_PTRACE" in result
    assert "kernel.yama.ptrace_scope" in result
    assert issubclass(PtraceNotPermittedError, PermissionError)


def _seccomp(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Seccomp:")).split()[1])


@pytest.mark.skipif(
    not os.access("/dev/console", os.W_OK),
    reason="Austin is only started under its filter where this process may write to /dev/console (root)",
)
async def test_austin_started_by_the_sampler_runs_filtered_and_still_samples(busy_child):
    sampler = AustinSampler(busy_child.pid, interval_us=5_000)
    twenty = asyncio.Event()
    samples = []

    def on_sample(sample):
        samples.append(sample)
        if len(samples) >= 20:
            twenty.set()

    async with asyncio.timeout(15):
        task = asyncio.create_task(sampler.run(on_sample))
        await sampler.wait_ready()
        stats = sampler.statistics()
        assert stats.austin_pid is not None
        assert _seccomp(stats.austin_pid) == 2, "Austin runs under the launcher's seccomp filter"
        await twenty.wait()
        sampler.stop()
        await task
