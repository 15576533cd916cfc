"""The SQLite profile store: round trips, queries, roll-ups, retention and the size cap."""

from __future__ import annotations

import random
import zlib

import pytest

from observability import ProfileStoreError
from observability.profiling import ProfileStore, ProfileWindow, WindowLabels
from observability.profiling._store import default_store_path

DAY = 86_400.0
NOW = 1_700_000_000.0


def window(group: str, start: float, *, pid: int = 1, version: str = "1.0", stacks=None, handled=None):
    labels = WindowLabels("host", group, pid, (f"{group}-actor",), version)
    stacks = stacks if stacks is not None else {"m;f": 3, "m;g": 1}
    return ProfileWindow(labels, start, start + 60.0, sum(stacks.values()), 1000, stacks, handled or {"x": 2})


@pytest.fixture
def store(tmp_path):
    with ProfileStore(tmp_path / "profiles.sqlite") as opened:
        yield opened


def test_a_window_reads_back_equal_after_compression(store):
    stored = window("g", NOW, stacks={f"m;f{i}": i for i in range(1, 300)}, handled={"a": 7, "b": 1})
    row_id = store.add(stored)
    assert store.load([row_id]) == [stored]
    (summary,) = store.summaries()
    assert (summary.id, summary.group, summary.pid, summary.handled) == (row_id, "g", 1, 8)
    assert summary.samples == stored.samples


def test_summaries_select_the_last_windows_of_a_group_or_actor_oldest_first(store):
    for i in range(5):
        store.add(window("alpha", NOW + 60 * i))
        store.add(window("beta", NOW + 60 * i + 1))
    last = store.summaries(actor="alpha", last=3)
    assert [s.start for s in last] == [NOW + 120, NOW + 180, NOW + 240]
    assert {s.group for s in store.summaries(actor="beta-actor")} == {"beta"}
    assert store.summaries(actor="nobody") == []
    assert len(store.summaries()) == 10
    assert [w.labels.group for w in store.windows(last=2)] == ["alpha", "beta"]


def test_retention_rolls_old_windows_into_one_per_group_version_and_hour(store):
    hour = (NOW // 3600) * 3600 - 10 * DAY
    for i in range(4):  # one hour of alpha 1.0 in four windows, and a version change
        store.add(window("alpha", hour + 600 * i, handled={"x": 1}))
    store.add(window("alpha", hour + 3000, version="1.1"))
    store.add(window("alpha", hour + 3600))  # the next hour
    recent = store.add(window("alpha", NOW - 60))
    report = store.apply_retention(NOW)
    assert (report.rolled_up, report.rollups_written) == (6, 3)
    assert [s.id for s in store.summaries()] == [recent]
    rollups = store.summaries(resolution="hour")
    assert [(s.version, s.start) for s in rollups] == [
        ("1.0", hour),
        ("1.1", hour + 3000),
        ("1.0", hour + 3600),
    ]
    (first,) = store.load([rollups[0].id])
    assert first.stacks == {"m;f": 12, "m;g": 4}
    assert first.handled == {"x": 4}
    assert (first.start, first.end) == (hour, hour + 1860)


def test_rolling_up_later_into_an_existing_hour_merges_with_it(store):
    hour = (NOW // 3600) * 3600 - 10 * DAY
    store.add(window("alpha", hour))
    store.apply_retention(NOW)
    store.add(window("alpha", hour + 600))  # arrived late, e.g. from a slow collector
    store.apply_retention(NOW)
    (rollup,) = store.windows(resolution="hour")
    assert rollup.samples == 8


def _damage(store, row_id, body=b"not zlib"):
    store._db.execute("UPDATE windows SET body = ? WHERE id = ?", (body, row_id))


@pytest.mark.parametrize(
    "body", [b"not zlib", zlib.compress(b"\xc1"), zlib.compress(b"\x90")]
)  # bad msgpack, no map
def test_a_damaged_row_is_dropped_by_retention_and_does_not_stop_it(store, body):
    hour = (NOW // 3600) * 3600 - 10 * DAY
    store.add(window("alpha", hour, handled={"x": 1}))
    _damage(store, store.add(window("alpha", hour + 600)), body)
    _damage(store, store.add(window("beta", hour + 600)), body)  # a bucket with nothing readable
    report = store.apply_retention(NOW)
    assert (report.rolled_up, report.rollups_written, report.dropped_unreadable) == (3, 1, 2)
    (rollup,) = store.windows(resolution="hour")
    assert (rollup.labels.group, rollup.samples) == ("alpha", 4)
    assert store.apply_retention(NOW).dropped_unreadable == 0  # gone, and retention goes on


def test_loading_a_damaged_row_names_it(store):
    row_id = store.add(window("alpha", NOW))
    _damage(store, row_id)
    with pytest.raises(ProfileStoreError, match=f"window {row_id} of the profile store .* cannot be read"):
        store.load([row_id])


def test_rollups_older_than_their_retention_are_deleted(store):
    store.add(window("alpha", NOW - 100 * DAY))
    report = store.apply_retention(NOW)
    assert (report.rolled_up, report.expired_rollups) == (1, 1)
    assert store.statistics().rollups == 0


def test_the_size_cap_drops_the_oldest_windows_first(tmp_path):
    rng = random.Random(5)
    with ProfileStore(tmp_path / "p.sqlite", max_bytes=200_000) as capped:
        for i in range(200):  # incompressible stacks: ~6 kB per window
            stacks = {f"m;f{rng.getrandbits(64):x}": rng.randint(1, 9) for _ in range(200)}
            capped.add(window("alpha", NOW + 60 * i, stacks=stacks))
        assert capped.statistics().live_bytes > 200_000
        report = capped.apply_retention(NOW + 60 * 200)
        stats = capped.statistics()
        assert report.dropped_for_size > 0
        assert stats.live_bytes <= 200_000
        assert stats.file_bytes < 300_000, "freed pages go back to the file system"
        starts = [s.start for s in capped.summaries()]
        assert starts == sorted(starts)
        assert starts[-1] == NOW + 60 * 199, "the newest window is kept"
        assert starts[0] > NOW


def test_opening_a_missing_store_for_queries_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(
        ProfileStoreError, match=r"no profile store at .*nowhere.sqlite; start `tickbus profiler`"
    ):
        ProfileStore(tmp_path / "nowhere.sqlite", create=False)


def test_a_store_that_cannot_be_created_names_the_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ProfileStoreError, match=r"cannot open the profile store .*file/profiles.sqlite"):
        ProfileStore(blocker / "profiles.sqlite")


def test_the_default_store_lives_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKBUS_DATA_DIR", str(tmp_path))
    assert default_store_path() == tmp_path / "profiles.sqlite"
    assert default_store_path(tmp_path / "x") == tmp_path / "x" / "profiles.sqlite"


def test_retention_failing_on_a_full_disk_names_the_disk_not_the_rollback(store, monkeypatch):
    # SQLite rolls back by itself on SQLITE_FULL; a second ROLLBACK raised "no transaction is
    # active" and that, not the full disk, was what the operator read
    import sqlite3

    def full(cutoff: float) -> object:
        store._db.execute("ROLLBACK")  # as SQLite does on SQLITE_FULL
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_roll_up", full)
    with pytest.raises(ProfileStoreError, match="database or disk is full"):
        store.apply_retention(now=0.0)


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_store_deleted_or_replaced_under_it_is_opened_anew(tmp_path, how):
    # windows written to a deleted file went nowhere: every query opened the new, empty one
    path = tmp_path / "profiles.sqlite"
    store = ProfileStore(path)
    try:
        store.add(window("model", 1.0))
        assert store.reopen_if_gone() is False
        if how == "deleted":
            path.unlink()  # an operator's rm, a cleaner: the -wal and -shm files stay behind
        else:
            other = ProfileStore(tmp_path / "other.sqlite")
            other.add(window("other", 5.0))
            other.close()
            (tmp_path / "other.sqlite").replace(path)
        assert store.reopen_if_gone() is True and store.reopened == 1
        store.add(window("model", 2.0))
        assert store.reopen_if_gone() is False
    finally:
        store.close()
    with ProfileStore(path, create=False) as seen:  # what `tickbus profile` reads now
        groups = sorted((s.group, s.start) for s in seen.summaries())
    assert groups == ([("model", 2.0)] if how == "deleted" else [("model", 2.0), ("other", 5.0)])
