"""Bounded JSON lines files: rotate by size, keep by age and count (the metrics and trace exporters').

Problem: the OTLP file exporters append forever; a group exporting every 10 s, or tracing 1% of a
busy feed, fills a disk in weeks.

Approach: :class:`RotatingFile` is the text stream handed to OpenTelemetry's file exporters. Before
a write would take the file past ``max_bytes`` it renames it ``<stem>.<UTC time>Z<suffix>`` (still
``*.jsonl``: ``tickbus trace`` reads rotated files too) and starts a fresh one; then the rotated
files of the same scope beyond the newest ``keep`` or older than ``max_age_days`` are deleted. It
writes where its exporter runs: the metrics file from the periodic metric reader's thread, a
trace file on the event loop in short slices (observability._span_export: a slice's write is one
system call), so a stalled disk would delay messages there; a full or read-only one fails fast.
Retention also runs when the file is opened, so a process that restarts often (a new trace file
per pid) prunes what its predecessors left.

A full disk, a read-only or deleted directory: a write that fails raises to its exporter (which
counts and logs it) and is counted in :attr:`RotatingFile.failures`; what it left of its line is
cut off again (the file is unbuffered: one write per export, so nothing waits in a buffer to fail
at close), so the next export starts a line of its own. Every few seconds a write checks that the
file still has a name; a file deleted under it (its directory removed, say) is opened anew, the
directory made again (:attr:`RotatingFile.reopened`). Writing resumes by itself once space is back.

Opening waits for the disk as much as writing does, and a process opens its files while it
starts: the broker before it says READY. Given ``open_timeout``, the file is opened (and pruned) on
a thread of its own and the constructor waits only that long: an error within it raises as
before (a directory that cannot be written fails the start), while a disk that has not answered
by then leaves the file to its first write (:attr:`RotatingFile.opening`; a WARNING says so),
which waits for that opening on the writer's thread. So a stalled disk at start delays the
exports, never the start.

Limits: a line is never split, so a file can exceed ``max_bytes`` by one export (one batch). Two
processes writing the same file (two groups with one name) may rotate it under each other.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from ._errors import ConfigError
from ._ratelimit import RateLimitedLog

# one line a minute per kind and signal (metrics, traces): a full disk fails every export
_log = RateLimitedLog(interval=60.0)

_CHECK_EVERY = 5.0  # seconds between two looks at whether the file still has a name
WRITE_FAILURES: dict[str, int] = {}
"""Failed writes of every :class:`RotatingFile` of this process so far, by ``signal`` (``metrics``,
``traces``): exported as ``tickbus.export.failures`` (a stream's own count ends with it)."""
OPEN_TIMEOUT = 1.0
"""How long a process's start waits for its export files to open (``RotatingFile(open_timeout=)``)."""


ROTATED = r"\.\d{8}T\d{12}Z"
"""The stamp a rotated file's name gets before its suffix, as a regex: ``.20261204T093715123456Z``."""


def _rotated_name(path: Path) -> re.Pattern[str]:
    """The names ``path``'s rotated files get: its stem, the stamp, its suffix."""
    return re.compile(re.escape(path.stem) + ROTATED + re.escape(path.suffix))


def rotated_files(path: str | Path) -> list[Path]:
    """The files a :class:`RotatingFile` at ``path`` rotated out and retention kept, oldest first."""
    path = Path(path)
    own = _rotated_name(path)
    try:
        names = sorted(entry.name for entry in os.scandir(path.parent) if own.fullmatch(entry.name))
    except OSError:  # no directory (yet), or not readable: nothing rotated to read
        return []
    return [path.parent / name for name in names]  # the stamp sorts by time


@dataclass(frozen=True)
class Rotation:
    """How big an export file grows and how many rotated ones stay.

    ``max_bytes``: rotate before a write would pass it; ``keep``: rotated files kept per scope;
    ``max_age_days``: rotated files older than this are deleted. 0 turns each limit off.
    """

    max_bytes: int = 32 * 1024 * 1024
    keep: int = 8
    max_age_days: float = 7.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Rotation:
        """The defaults, overridden by ``$TICKBUS_EXPORT_MAX_BYTES``, ``$TICKBUS_EXPORT_KEEP`` and
        ``$TICKBUS_EXPORT_MAX_AGE_DAYS``; :class:`ConfigError` names a variable that is not a number >= 0."""
        env = os.environ if environ is None else environ
        default = cls()

        def number(name: str, fallback: float, kind: Callable[[str], float]) -> float:
            text = env.get(name, "").strip()
            if not text:
                return fallback
            try:
                value = kind(text)
            except ValueError:
                value = -1
            if not value >= 0:
                raise ConfigError(f"{name}={text!r} must be a number >= 0 (0: no limit)")
            return value

        return cls(
            max_bytes=int(number("TICKBUS_EXPORT_MAX_BYTES", default.max_bytes, int)),
            keep=int(number("TICKBUS_EXPORT_KEEP", default.keep, int)),
            max_age_days=number("TICKBUS_EXPORT_MAX_AGE_DAYS", default.max_age_days, float),
        )


class RotatingFile(io.TextIOBase):
    """An append-only text stream at ``path`` that rotates by size and prunes rotated files.

    ``scope`` matches the names (in ``path``'s directory) that retention may delete, besides this
    file's own rotations; ``is_live`` spares those still being written by another process.
    """

    def __init__(
        self,
        path: str | Path,
        rotation: Rotation | None = None,
        *,
        scope: str | None = None,
        is_live: Callable[[Path], bool] = lambda path: False,
        signal: str = "file",
        open_timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.signal = signal  # what it carries, for WRITE_FAILURES
        self.rotation = rotation if rotation is not None else Rotation()
        self._own = _rotated_name(self.path)
        self._scope = re.compile(scope) if scope is not None else self._own
        self._is_live = is_live
        self.rotations = 0
        self.deleted = 0
        self.failures = 0
        """Writes that failed (a full disk, a read-only or vanished directory): their exports are lost."""
        self.reopened = 0
        """Times the file was found deleted under this stream and opened anew."""
        self._file: io.FileIO | None = None
        self._opening = threading.Lock()  # held while the file is first opened
        if open_timeout is None:
            self._first_open()
            return
        failed: list[Exception] = []
        done = threading.Event()

        def opener() -> None:
            try:
                self._first_open()
            except Exception as exc:  # raised here as it would have been without the thread
                failed.append(exc)
            finally:
                done.set()

        threading.Thread(target=opener, name=f"tickbus-{signal}-open", daemon=True).start()
        if not done.wait(open_timeout):
            _log.warning(
                f"stalled open {signal}",  # a kind per signal: the trace file's is not the metrics'
                "{} file {} not opened within {} s (a stalled disk?): starting without it; its exports "
                "wait for the disk in the writer's queue, past its bound dropped and counted",
                signal,
                self.path,
                open_timeout,
            )
        elif failed:
            raise failed[0]

    @property
    def opening(self) -> bool:
        """True while the first opening waits for the disk (``open_timeout`` passed without it)."""
        return self._file is None and not self.closed

    def _first_open(self) -> io.FileIO:
        with self._opening:
            if self._file is not None:
                return self._file
            if self.closed:
                raise OSError(f"{self.path}: closed before it was opened")
            file = self._open()
            if self.closed:  # closed while this waited for the disk
                file.close()
                raise OSError(f"{self.path}: closed while it was being opened")
            self.prune()
            return file

    def _open(self) -> io.FileIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = io.FileIO(self.path, "a")  # unbuffered: a failed write leaves nothing behind
        self._size = file.seek(0, os.SEEK_END)
        self._checked = time.monotonic()
        self._file = file
        return file

    def as_io(self) -> IO[str]:
        """This stream typed as the exporters' ``IO[str]`` (they call ``write``, ``flush``, ``closed``)."""
        return cast("IO[str]", self)

    def write(self, text: str) -> int:
        """Append ``text`` (one or more whole lines), rotating first if it would pass ``max_bytes``;
        ``OSError`` when it could not (counted in :attr:`failures`, nothing of it left in the file)."""
        data = text.encode("utf-8")
        try:
            file = self._file if self._file is not None else self._first_open()
            if file.closed or self._deleted(file):
                file = self._reopen(file)
            limit = self.rotation.max_bytes
            if limit and self._size and self._size + len(data) > limit:
                file = self._rotate(file)
            view, done = memoryview(data), 0
            while done < len(data):
                done += file.write(view[done:]) or 0
        except OSError:
            self.failures += 1
            WRITE_FAILURES[self.signal] = WRITE_FAILURES.get(self.signal, 0) + 1
            if self._file is not None and not self._file.closed:  # no torn line for the next export
                with contextlib.suppress(OSError):
                    os.ftruncate(self._file.fileno(), self._size)
            raise
        self._size += len(data)
        return len(text)

    def flush(self) -> None:
        """Nothing to do: every write goes to the operating system as it is made."""

    def close(self) -> None:
        """Close the current file (nothing is buffered: closing cannot fail on a full disk)."""
        super().close()  # first: an opening still waiting for the disk closes what it opens
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()

    def _deleted(self, file: io.FileIO) -> bool:
        """Every few seconds: True when the file has no name any more (deleted under this stream)."""
        now = time.monotonic()
        if now - self._checked < _CHECK_EVERY:
            return False
        self._checked = now
        return os.fstat(file.fileno()).st_nlink == 0

    def _reopen(self, file: io.FileIO) -> io.FileIO:
        with contextlib.suppress(OSError):
            file.close()
        file = self._open()  # the directory made again if it went: OSError while that cannot be done
        self.reopened += 1
        self.prune()
        return file

    def _rotate(self, file: io.FileIO) -> io.FileIO:
        file.close()
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"
        try:
            self.path.rename(self.path.with_name(f"{self.path.stem}.{stamp}{self.path.suffix}"))
            self.rotations += 1
        except OSError as exc:  # keep writing to the same file rather than lose the export
            _log.warning(
                f"rotate {self.signal}", "export file {} not rotated: {}", self.path, exc.strerror or exc
            )
        file = self._open()  # OSError: the file stays closed, the next write tries again
        self.prune()
        return file

    def prune(self) -> int:
        """Delete the rotated files in scope beyond the newest ``keep`` or older than the age limit."""
        rotation = self.rotation
        try:
            candidates = [
                p
                for p in self.path.parent.iterdir()
                if p != self.path and (self._own.fullmatch(p.name) or self._scope.fullmatch(p.name))
            ]
            dated = sorted(((p.stat().st_mtime, p) for p in candidates if not self._is_live(p)), reverse=True)
        except OSError:  # a file went away meanwhile (another process pruning): next time
            return 0
        oldest = time.time() - rotation.max_age_days * 86400.0 if rotation.max_age_days else None
        deleted = 0
        for index, (mtime, path) in enumerate(dated):
            if (rotation.keep and index >= rotation.keep) or (oldest is not None and mtime < oldest):
                try:
                    path.unlink()
                    deleted += 1
                except OSError:
                    pass
        self.deleted += deleted
        return deleted


def pid_is_live(path: Path) -> bool:
    """For ``<service>-<pid>.jsonl`` trace files: True while that process runs (its file is live)."""
    match = re.search(r"-(\d+)\.jsonl$", path.name)
    if match is None:
        return False
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or not a pid: leave it alone
    return True
