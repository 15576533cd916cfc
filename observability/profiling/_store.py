"""The profile store: profile windows in one embedded SQLite file, ``<data_dir>/profiles.sqlite``.

One table, ``windows``: label columns to select on (host, group, pid, version, time, samples,
messages handled) and the window itself as zlib-compressed msgpack, which keeps a minute of a busy
actor (a few hundred distinct stacks) to a few kilobytes. ``resolution`` is ``raw`` for the
collector's windows and ``hour`` for roll-ups.

Retention (:meth:`ProfileStore.apply_retention`, run by the collector every few minutes): raw windows
older than ``raw_days`` are merged into one ``hour`` roll-up per (host, group, version, hour) and
deleted; roll-ups older than ``rollup_days`` are deleted; then, while the live data is larger than
``max_bytes``, the oldest rows go first, and freed pages are returned to the file system
(``auto_vacuum = INCREMENTAL``). WAL journaling lets ``tickbus profile`` read while the collector writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import msgpack

from .._errors import ProfileStoreError
from .._resource import data_dir
from ._windows import ProfileWindow, merge_windows

Resolution = Literal["raw", "hour"]

FILENAME = "profiles.sqlite"
SCHEMA_VERSION = "1"
_DAY = 86_400.0
_HOUR = 3_600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY,
    resolution TEXT NOT NULL,
    host TEXT NOT NULL,
    grp TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    actors TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    samples INTEGER NOT NULL,
    handled INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS windows_by_time ON windows (resolution, start);
CREATE INDEX IF NOT EXISTS windows_by_group ON windows (grp, start);
"""
_COLUMNS = 'id, resolution, host, grp, pid, version, actors, start, "end", samples, handled'


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """A stored window's labels and totals, without its stacks."""

    id: int
    resolution: str
    host: str
    group: str
    pid: int
    version: str
    actors: tuple[str, ...]
    start: float
    end: float
    samples: int
    handled: int

    def concerns(self, actor: str) -> bool:
        """True when ``actor`` names this window's group or one of its actors."""
        return actor == self.group or actor in self.actors


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one :meth:`ProfileStore.apply_retention` did."""

    rolled_up: int
    rollups_written: int
    expired_rollups: int
    dropped_for_size: int
    dropped_unreadable: int = 0  # rows past the roll-up age whose body no longer decodes


@dataclass(frozen=True, slots=True)
class ProfileStoreStatistics:
    """Size and contents of a profile store (``file_bytes`` counts the WAL too)."""

    path: str
    raw_windows: int
    rollups: int
    live_bytes: int
    file_bytes: int


def default_store_path(directory: Path | str | None = None) -> Path:
    """``profiles.sqlite`` in ``directory``, by default :func:`observability.data_dir`."""
    return Path(directory if directory is not None else data_dir()) / FILENAME


def encode_window(window: ProfileWindow) -> bytes:
    """The stored form of a window: zlib-compressed msgpack of :meth:`ProfileWindow.to_dict`."""
    return zlib.compress(msgpack.packb(window.to_dict()), 6)


def decode_window(body: bytes) -> ProfileWindow:
    """The window :func:`encode_window` stored; ``ValueError`` if ``body`` is not one (a damaged row)."""
    try:
        return ProfileWindow.from_dict(msgpack.unpackb(zlib.decompress(body), strict_map_key=False))
    except Exception as exc:  # zlib.error, msgpack's errors, a missing or mistyped field
        raise ValueError(f"not a stored profile window ({type(exc).__name__}: {exc})") from exc


class ProfileStore:
    """An open ``profiles.sqlite``; use as a context manager or call :meth:`close`.

    ``create=False`` opens an existing store only (the ``tickbus profile`` queries).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        raw_days: float = 7.0,
        rollup_days: float = 90.0,
        max_bytes: int = 256 * 1024 * 1024,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.raw_days = raw_days
        self.rollup_days = rollup_days
        self.max_bytes = max_bytes
        if not create and not self.path.is_file():
            raise ProfileStoreError(
                f"no profile store at {self.path}; start `tickbus profiler` (or pass --data-dir)"
            )
        self.reopened = 0
        """Times the store's file was found deleted or replaced and opened anew (:meth:`reopen_if_gone`)."""
        self._create = create
        self._db, self._file_id = self._open()
        self._sidecars = self._sidecar_ids()  # the write-ahead log and index this connection uses

    def _open(self) -> tuple[sqlite3.Connection, tuple[int, int] | None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise self._error("cannot open", exc) from exc
        try:
            if self._create:  # queries (create=False) never write, so they never wait for the collector
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file only
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript(_SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
        except (sqlite3.Error, OSError) as exc:
            db.close()
            raise self._error("cannot open", exc) from exc
        return db, _identity(self.path)

    def _sidecar_ids(self) -> dict[Path, tuple[int, int] | None]:
        return {file: _identity(file) for file in (self._wal, self.path.with_name(self.path.name + "-shm"))}

    def reopen_if_gone(self) -> bool:
        """Open the store anew (empty) when its file was deleted or replaced under this connection:
        windows written to a deleted file are lost with it, unseen by every query. True if it did.

        ``ProfileStoreError`` when the new file cannot be opened (the next call tries again)."""
        if _identity(self.path) == self._file_id and self._file_id is not None:
            return False
        # SQLite leaves the old file's write-ahead log and its index behind when that file lost its
        # name: opened with them, the new file replays the old one's last writes over its own pages
        # (a replaced store read the old one's rows, measured). They go with the connection: the
        # very files it used only (a store restored with a log of its own keeps it).
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._file_id = None  # until a file is open again: the next call tries
        for leftover, used in self._sidecars.items():
            if used is not None and _identity(leftover) == used:
                try:
                    leftover.unlink(missing_ok=True)
                except OSError as exc:  # not opened over them: the next call tries again
                    raise self._error("cannot remove the old write-ahead log of", exc) from exc
        self._db, self._file_id = self._open()
        self._sidecars = self._sidecar_ids()
        self.reopened += 1
        return True

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def _wal(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def add(self, window: ProfileWindow, resolution: Resolution = "raw") -> int:
        """Store one window; returns its id."""
        try:
            cursor = self._db.execute(
                f"INSERT INTO windows ({_COLUMNS}, body) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _row(window, resolution),
            )
        except sqlite3.Error as exc:
            raise self._error("cannot write a window to", exc) from exc
        return int(cursor.lastrowid or 0)

    def summaries(
        self,
        *,
        actor: str | None = None,
        resolution: Resolution = "raw",
        last: int | None = None,
        since: float | None = None,
    ) -> list[WindowSummary]:
        """Stored windows, oldest first: the ``last`` most recent ones of ``actor`` (group or actor name)."""
        query = (
            f"SELECT {_COLUMNS} FROM windows WHERE resolution = ? AND start >= ? ORDER BY start DESC, id DESC"
        )
        found: list[WindowSummary] = []
        for summary in self._select(query, (resolution, since if since is not None else -1.0)):
            if actor is None or summary.concerns(actor):
                found.append(summary)
                if last is not None and len(found) >= last:
                    break
        found.reverse()
        return found

    def load(self, ids: Sequence[int]) -> list[ProfileWindow]:
        """The windows with these ids, in the order given."""
        bodies = self._bodies(ids)
        windows = []
        for i in ids:
            if i in bodies:
                try:
                    windows.append(decode_window(bodies[i]))
                except ValueError as exc:
                    raise ProfileStoreError(
                        f"window {i} of the profile store {self.path} cannot be read: {exc}; the collector "
                        "drops such rows when they reach the roll-up age, or move the file away"
                    ) from exc
        return windows

    def _bodies(self, ids: Sequence[int]) -> dict[int, bytes]:
        bodies: dict[int, bytes] = {}
        try:
            for start in range(0, len(ids), 500):  # SQLite limits bound parameters per statement
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for row_id, body in self._db.execute(
                    f"SELECT id, body FROM windows WHERE id IN ({marks})", chunk
                ):
                    bodies[int(row_id)] = bytes(body)
        except sqlite3.Error as exc:
            raise self._error("cannot read windows from", exc) from exc
        return bodies

    def windows(
        self, *, actor: str | None = None, resolution: Resolution = "raw", last: int | None = None
    ) -> list[ProfileWindow]:
        """Like :meth:`summaries`, with the stacks."""
        return self.load([s.id for s in self.summaries(actor=actor, resolution=resolution, last=last)])

    def apply_retention(self, now: float) -> RetentionReport:
        """Roll up and drop old windows, then enforce ``max_bytes``; see the module docstring."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rolled, written, unreadable = self._roll_up(now - self.raw_days * _DAY)
                expired = self._db.execute(
                    "DELETE FROM windows WHERE resolution = 'hour' AND \"end\" < ?",
                    (now - self.rollup_days * _DAY,),
                ).rowcount
                dropped = self._enforce_size()
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk): a second ROLLBACK would raise
                # "no transaction is active" and hide "database or disk is full"
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            # executescript steps the pragma to completion; execute() would free a single page
            self._db.executescript("PRAGMA incremental_vacuum;")
            # the main file only shrinks when the WAL is checkpointed; this also bounds the WAL
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise self._error("cannot apply retention to", exc) from exc
        return RetentionReport(rolled, written, expired, dropped, unreadable)

    def statistics(self) -> ProfileStoreStatistics:
        """Row counts and sizes (live bytes exclude free pages)."""
        try:
            counts = dict(self._db.execute("SELECT resolution, COUNT(*) FROM windows GROUP BY resolution"))
        except sqlite3.Error as exc:
            raise self._error("cannot read", exc) from exc
        return ProfileStoreStatistics(
            path=str(self.path),
            raw_windows=int(counts.get("raw", 0)),
            rollups=int(counts.get("hour", 0)),
            live_bytes=self._live_bytes(),
            file_bytes=sum(p.stat().st_size for p in (self.path, self._wal) if p.exists()),
        )

    def _roll_up(self, cutoff: float) -> tuple[int, int, int]:
        """Merge raw windows older than ``cutoff`` into hour roll-ups; returns (rolled up, roll-ups
        written, rows dropped because their body does not decode: one damaged row must not stop
        retention, and with it the bound on the file's size, for good)."""
        old = [
            s
            for s in self._select(
                f"SELECT {_COLUMNS} FROM windows WHERE resolution = 'raw' AND \"end\" < ?", (cutoff,)
            )
        ]
        if not old:
            return 0, 0, 0
        unreadable = 0
        buckets: dict[tuple[str, str, str, float], list[int]] = defaultdict(list)
        for s in old:
            buckets[(s.host, s.group, s.version, (s.start // _HOUR) * _HOUR)].append(s.id)
        written = 0
        for (host, group, version, hour), ids in buckets.items():
            existing = list(
                self._db.execute(
                    "SELECT id, body FROM windows WHERE resolution = 'hour' AND host = ? AND grp = ? "
                    "AND version = ? AND start >= ? AND start < ?",
                    (host, group, version, hour, hour + _HOUR),
                )
            )
            bodies = [*self._bodies(ids).values(), *(bytes(body) for _, body in existing)]
            parts = []
            for body in bodies:
                try:
                    parts.append(decode_window(body))
                except ValueError:
                    unreadable += 1
            self._db.executemany("DELETE FROM windows WHERE id = ?", [(i,) for i, _ in existing])
            if parts:
                self._db.execute(
                    f"INSERT INTO windows ({_COLUMNS}, body) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _row(merge_windows(parts), "hour"),
                )
                written += 1
        self._db.executemany("DELETE FROM windows WHERE id = ?", [(s.id,) for s in old])
        return len(old), written, unreadable

    def _enforce_size(self) -> int:
        dropped = 0
        while self._live_bytes() > self.max_bytes:
            total = int(self._db.execute("SELECT COUNT(*) FROM windows").fetchone()[0])
            if not total:
                break
            batch = max(1, total // 10)
            dropped += self._db.execute(
                "DELETE FROM windows WHERE id IN (SELECT id FROM windows ORDER BY start, id LIMIT ?)",
                (batch,),
            ).rowcount
        return dropped

    def _live_bytes(self) -> int:
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        return (pages - free) * size

    def _select(self, query: str, params: tuple[object, ...]) -> Iterator[WindowSummary]:
        try:
            for row in self._db.execute(query, params):
                yield WindowSummary(
                    id=int(row[0]),
                    resolution=str(row[1]),
                    host=str(row[2]),
                    group=str(row[3]),
                    pid=int(row[4]),
                    version=str(row[5]),
                    actors=tuple(json.loads(row[6])),
                    start=float(row[7]),
                    end=float(row[8]),
                    samples=int(row[9]),
                    handled=int(row[10]),
                )
        except sqlite3.Error as exc:
            raise self._error("cannot read windows from", exc) from exc

    def _error(self, what: str, exc: BaseException) -> ProfileStoreError:
        return ProfileStoreError(
            f"{what} the profile store {self.path}: {exc}; check that the directory is writable and the "
            "disk not full, or move the file away to start a new store"
        )


def _identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path`` now; None when there is none."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _row(window: ProfileWindow, resolution: str) -> tuple[object, ...]:
    labels = window.labels
    return (
        resolution,
        labels.host,
        labels.group,
        labels.pid,
        labels.version,
        json.dumps(list(labels.actors)),
        window.start,
        window.end,
        window.samples,
        window.handled_total,
        encode_window(window),
    )
