"""The one adapter between tickbus and Austin, the frame stack sampler for CPython.

Everything that knows Austin's command line, its output format or austin-python's API lives here, so
another Austin (4.x and its MOJO output) can be added behind the same :class:`AustinSampler` later.

Austin 3.7 (``austin-dist``, binary in the virtualenv's ``bin/``) attaches to a running process by
pid and reads the interpreter's frame stacks with ``process_vm_readv``: the target is never stopped,
it only pays for the memory reads. In pipe mode (``-P``) it prints ``# key: value`` metadata lines,
then one line per sample::

    P<pid>;T<iid>:<tid>;<file>:<function>:<line>;<file>:<function>:<line> <metric>

outermost frame first; ``<metric>`` is the sampled thread's CPU time in microseconds in CPU mode
(``-s``, idle threads are left out) or wall time otherwise. austin-python 1.7's ``AsyncAustin`` runs
the binary as an asyncio subprocess, reads the metadata, calls ``ready_callback(austin, target,
cmdline)``, then ``sample_callback(line)`` per line; ``austin.stats.Sample.parse`` parses a line.
When the target exits Austin prints closing metadata and exits 0.

Reading another process's memory needs ptrace access: the same user and
``kernel.yama.ptrace_scope`` <= 1 (and Austin being the tracee's ancestor when it is 1), or
``CAP_SYS_PTRACE``. Without it Austin exits claiming the target is "not a Python process"; this module
checks ``/proc/<pid>/mem`` itself and raises :class:`PtraceNotPermittedError` naming the fix.

Austin logs its sampling misses with ``syslog(3)``, which falls back to ``/dev/console`` where no
syslog daemon listens: a millisecond a line with interrupts off on a serial console. Where this
process may write to the console (root), Austin starts through :mod:`._austin_exec`, which leaves it
unable to open files for writing (:func:`quiet_launcher`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from austin import AustinError
from austin.aio import AsyncAustin
from austin.stats import InvalidSample, MetricType, Sample
from loguru import logger

from .._errors import PtraceNotPermittedError, SamplerError
from ._austin_exec import read_only_filter

Mode = Literal["cpu", "wall"]

DEFAULT_INTERVAL_US = 10_000  # 100 Hz: ~1% of one core for Austin, enough samples per minute
_STARTUP_WAIT_MS = 1_000  # Austin's -t: how long to look for the interpreter state on attach
_STOP_TIMEOUT = 2.0


class StackFrame(NamedTuple):
    """One frame of a sampled stack."""

    function: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class AustinSample:
    """One sample: a thread's stack (outermost frame first) and the time it stands for."""

    pid: int
    thread: str
    stack: tuple[StackFrame, ...]
    cpu_us: int


@dataclass(frozen=True, slots=True)
class SamplerStatistics:
    """Counters of one :class:`AustinSampler`."""

    pid: int
    austin_pid: int | None
    running: bool
    samples: int
    invalid: int
    austin_version: str
    python_version: str


def parse_sample(line: str, mode: Mode = "cpu") -> AustinSample:
    """Parse one sample line of Austin 3's collapsed output; :class:`SamplerError` if it is not one."""
    try:
        (sample,) = Sample.parse(line, MetricType.TIME)
    except (InvalidSample, ValueError, IndexError) as exc:
        raise SamplerError(f"not an Austin {mode} sample line: {line[:200]!r}") from exc
    frames = tuple(StackFrame(f.function, f.filename, f.line) for f in sample.frames)
    return AustinSample(int(sample.pid), str(sample.thread), frames, int(sample.metric.value))


def austin_binary() -> Path:
    """The ``austin`` executable: next to this interpreter (``austin-dist`` in a venv), else on PATH."""
    beside = Path(sys.executable).parent / "austin"
    if beside.is_file():
        return beside
    found = shutil.which("austin")
    if found is None:
        raise SamplerError(
            f"no austin executable next to {sys.executable} nor on PATH; "
            "install it with `pip install 'austin-dist>=3.7,<3.8'`"
        )
    return Path(found)


def ptrace_denied(pid: int) -> bool:
    """True when this process may not read ``pid``'s memory (the kernel's ptrace access check)."""
    try:
        with open(f"/proc/{pid}/mem", "rb"):
            return False
    except PermissionError:
        return True
    except OSError:  # gone, or no procfs: not a permission problem
        return False


def ptrace_fix(pid: int) -> str:
    """How to let Austin read ``pid``, with the current ``kernel.yama.ptrace_scope`` when there is one."""
    try:
        scope = Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip()
    except OSError:
        scope = "not set (no Yama)"
    return (
        f"the kernel does not let Austin read the memory of process {pid} (kernel.yama.ptrace_scope "
        f"is {scope}); run the profiler as the target's user with `sysctl kernel.yama.ptrace_scope=0`, "
        "or grant CAP_SYS_PTRACE (`setcap cap_sys_ptrace+ep .venv/bin/austin`, or "
        "`--cap-add SYS_PTRACE` for a container)"
    )


def console_writable() -> bool:
    """True when this process (and so an Austin it starts) may open ``/dev/console`` for writing."""
    return os.access("/dev/console", os.W_OK)


_launchers: dict[Path, Path] = {}
_SHEBANG_MAX = 255  # the kernel reads 256 bytes of a script's first line (Linux >= 5.1)


def quiet_launcher(binary: Path) -> Path | None:
    """An executable that runs ``binary`` (Austin) under :mod:`._austin_exec`'s filter, written into
    a private temporary directory when first needed (again if a cleaner removed it); None where it is
    not needed (the console is not writable) or cannot work (no Linux seccomp for this machine, a
    ``noexec`` or unwritable temporary directory, an interpreter path too long for a ``#!`` line)."""
    if not console_writable() or read_only_filter(os.uname().machine) is None:
        return None
    known = _launchers.get(binary)
    if known is not None and known.is_file():
        return known
    shebang = f"#!{sys.executable} -IS"
    if len(shebang.encode()) > _SHEBANG_MAX or "\n" in sys.executable:
        return None
    try:
        temporary = tempfile.gettempdir()
        if os.statvfs(temporary).f_flag & os.ST_NOEXEC:
            _warn_once("noexec", "austin starts without its launcher: {} is mounted noexec", temporary)
            return None
        directory = tempfile.mkdtemp(prefix="tickbus-austin-")
        try:
            launcher = _write_launcher(Path(directory), shebang, binary)
        except OSError:  # a full disk: nothing left behind, and no exit handler per attempt
            shutil.rmtree(directory, ignore_errors=True)
            raise
    except OSError as exc:
        _warn_once("unwritable", "austin starts without its launcher, which could not be written: {}", exc)
        return None
    atexit.register(shutil.rmtree, directory, ignore_errors=True)  # once per launcher made
    _launchers[binary] = launcher
    return launcher


def _write_launcher(directory: Path, shebang: str, binary: Path) -> Path:
    source = Path(__file__).with_name("_austin_exec.py").read_text()
    launcher = directory / "austin"
    launcher.write_text(f"{shebang}\n{source}\nexec_filtered({str(binary)!r}, sys.argv[1:])\n")
    launcher.chmod(0o700)
    return launcher


def seccomp_mode(pid: int) -> int | None:
    """``Seccomp:`` of ``/proc/<pid>/status`` (0 none, 2 filtered), None when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class AustinSampler:
    """Austin attached to one process, delivering parsed samples until the process exits.

    ``await sampler.run(on_sample)`` returns normally when the target exits or :meth:`stop` is called,
    and raises :class:`SamplerError` (or :class:`PtraceNotPermittedError`) when Austin cannot attach
    or dies. ``async for sample in sampler.samples()`` is the same as an async iterator.
    """

    def __init__(
        self,
        pid: int,
        *,
        interval_us: int = DEFAULT_INTERVAL_US,
        mode: Mode = "cpu",
        binary: Path | str | None = None,
    ) -> None:
        if interval_us <= 0:
            raise SamplerError(f"sampling interval {interval_us} µs for pid {pid} must be positive")
        self.pid = pid
        self.interval_us = interval_us
        self.mode: Mode = mode
        self._binary = Path(binary) if binary is not None else None
        self._austin: Any = None  # austin.aio.AsyncAustin; austin-python ships no type hints
        self._stopping = False
        self._samples = 0
        self._invalid = 0
        self._ready = asyncio.Event()

    def args(self) -> list[str]:
        """Austin's command line, without the binary and the ``-P`` austin-python adds."""
        args = ["-i", str(self.interval_us), "-t", str(_STARTUP_WAIT_MS), "-p", str(self.pid)]
        return ["-s", *args] if self.mode == "cpu" else args

    async def wait_ready(self) -> None:
        """Wait until Austin has attached and printed its metadata."""
        await self._ready.wait()

    async def run(self, on_sample: Callable[[AustinSample], None]) -> None:
        """Sample until the target exits or :meth:`stop`; see the class docstring for errors."""
        if self._austin is not None:
            raise SamplerError(f"the Austin sampler of pid {self.pid} was already started; make a new one")
        binary = self._binary or austin_binary()
        mode = self.mode
        if self._stopping:
            return

        def sample(line: str) -> None:
            try:
                parsed = parse_sample(line, mode)
            except SamplerError:
                self._invalid += 1
                return
            self._samples += 1
            on_sample(parsed)

        def ready(austin: Any, target: Any, cmdline: str) -> None:
            logger.debug("austin {} attached to pid {} ({})", austin.pid, self.pid, cmdline)
            if launcher is not None and seccomp_mode(austin.pid) == 0:
                _warn_once(
                    "unfiltered",
                    "austin {} runs without its seccomp filter (the kernel refused it)",
                    austin.pid,
                )
            self._ready.set()
            if self._stopping:  # stop() came while the Austin process was being created
                self.stop()

        austin = AsyncAustin(sample_callback=sample, ready_callback=ready)
        # binary_path is a functools.cached_property: an instance value takes precedence over
        # austin-python's lookup (cwd, $AUSTINPATH, ~/.austinrc, PATH), which misses an inactive venv.
        launcher = quiet_launcher(binary)
        austin.binary_path = str(launcher or binary)
        self._austin = austin
        try:
            await austin.start(self.args())
        except AustinError as exc:
            if self._stopping:  # our SIGTERM: austin-python raises AustinTerminated for it
                return
            raise await self._translate(exc) from exc
        except OSError as exc:
            raise SamplerError(f"cannot run Austin ({binary}) for pid {self.pid}: {exc}") from exc
        finally:
            await self._reap()

    async def samples(self) -> AsyncIterator[AustinSample]:
        """Yield samples as they arrive; the iteration ends when the target exits.

        Leaving the loop early stops Austin (use ``contextlib.aclosing`` to do so at once).
        """
        queue: asyncio.Queue[AustinSample | None] = asyncio.Queue()
        failure: list[BaseException] = []

        async def pump() -> None:
            try:
                await self.run(queue.put_nowait)
            except SamplerError as exc:
                failure.append(exc)
            finally:
                queue.put_nowait(None)

        task = asyncio.get_running_loop().create_task(pump(), name=f"austin-{self.pid}")
        try:
            while (item := await queue.get()) is not None:
                yield item
            await task
            if failure:
                raise failure[0]
        finally:
            self.stop()
            await asyncio.gather(task, return_exceptions=True)

    def stop(self) -> None:
        """Ask Austin to stop (SIGTERM); :meth:`run` then returns. The target is left untouched."""
        self._stopping = True
        proc = getattr(self._austin, "proc", None)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

    def statistics(self) -> SamplerStatistics:
        """A snapshot of this sampler's counters."""
        austin = self._austin
        proc = getattr(austin, "proc", None)
        meta: dict[str, str] = getattr(austin, "_meta", {}) or {}
        return SamplerStatistics(
            pid=self.pid,
            austin_pid=proc.pid if proc is not None else None,
            running=proc is not None and proc.returncode is None,
            samples=self._samples,
            invalid=self._invalid,
            austin_version=meta.get("austin", ""),
            python_version=meta.get("python", ""),
        )

    async def _translate(self, exc: AustinError) -> SamplerError:
        """The one place where Austin's failures become tickbus errors."""
        proc = getattr(self._austin, "proc", None)
        code: int | None = None
        stderr = ""
        if proc is not None:
            with contextlib.suppress(TimeoutError):
                code = await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
            if proc.stderr is not None:
                with contextlib.suppress(TimeoutError, OSError):
                    raw = await asyncio.wait_for(proc.stderr.read(), _STOP_TIMEOUT)
                    stderr = " ".join(raw.decode(errors="replace").split())
        if ptrace_denied(self.pid) or "Permission denied" in stderr:
            return PtraceNotPermittedError(ptrace_fix(self.pid))
        # austin-python's cleanup may reap Austin before asyncio does, leaving exit code 255: the
        # code is only worth showing when Austin said nothing
        said = stderr or f"{exc or type(exc).__name__} (exit code {code})"
        return SamplerError(f"Austin stopped sampling pid {self.pid}: {said}")

    async def _reap(self) -> None:
        """Make sure the Austin process is gone: asyncio cancellation skips austin-python's cleanup."""
        proc = getattr(self._austin, "proc", None)
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.shield(asyncio.wait_for(proc.wait(), _STOP_TIMEOUT))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())


_warned: set[str] = set()  # kinds of warning already logged by this process


def _warn_once(kind: str, message: str, *args: object) -> None:
    if kind not in _warned:
        _warned.add(kind)
        logger.warning(message + _CONSOLE_RISK, *args)


_CONSOLE_RISK = " (its log lines may go to /dev/console when no syslog daemon listens on /dev/log)"
