"""Bounded JSON lines files: rotate by size, keep by age and count (the metrics and trace exporters').

Problem: the OTLP file exporters append forever; a group exporting every 10 s, or tracing 1% of a
busy feed, fills a disk in weeks.

Approach: :class:`RotatingFile` is the text stream handed to OpenTelemetry's file exporters. Before
a write would take the file past ``max_bytes`` it renames it ``<stem>.<UTC time>Z<suffix>`` (still
``*.jsonl``: ``tickbus trace`` reads rotated files too) and starts a fresh one; then the rotated
files of the same scope beyond the newest ``keep`` or older than ``max_age_days`` are deleted. It
writes from the exporters' own thread (the periodic metric reader, the batch span processor), never
from the event loop, so a rotation or a slow disk delays an export, not a message. Retention also
runs when the file is opened, so a process that restarts often (a new trace file per pid) prunes
what its predecessors left.

Limits: a line is never split, so a file can exceed ``max_bytes`` by one export (one batch). Two
processes writing the same file (two groups with one name) may rotate it under each other.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from loguru import logger

from ._errors import ConfigError

ROTATED = r"\.\d{8}T\d{12}Z"
"""The stamp a rotated file's name gets before its suffix, as a regex: ``.20261204T093715123456Z``."""


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
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.rotation = rotation if rotation is not None else Rotation()
        stem, suffix = self.path.stem, self.path.suffix
        self._own = re.compile(re.escape(stem) + ROTATED + re.escape(suffix))
        self._scope = re.compile(scope) if scope is not None else self._own
        self._is_live = is_live
        self.rotations = 0
        self.deleted = 0
        self._file = self.path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        self.prune()

    def as_io(self) -> IO[str]:
        """This stream typed as the exporters' ``IO[str]`` (they call ``write``, ``flush``, ``closed``)."""
        return cast("IO[str]", self)

    def write(self, text: str) -> int:
        """Append ``text`` (one or more whole lines), rotating first if it would pass ``max_bytes``."""
        size = len(text.encode("utf-8")) if not text.isascii() else len(text)
        limit = self.rotation.max_bytes
        if limit and self._size and self._size + size > limit:
            self._rotate()
        written = self._file.write(text)
        self._size += size
        return written

    def flush(self) -> None:
        """Flush to the operating system."""
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        """Close the current file."""
        self._file.close()
        super().close()

    def _rotate(self) -> None:
        self._file.close()
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"
        try:
            self.path.rename(self.path.with_name(f"{self.path.stem}.{stamp}{self.path.suffix}"))
            self.rotations += 1
        except OSError as exc:  # keep writing to the same file rather than lose the export
            logger.warning("export file {} not rotated: {}", self.path, exc.strerror or exc)
        self._file = self.path.open("a", encoding="utf-8")
        self._size = self._file.tell()
        self.prune()

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
