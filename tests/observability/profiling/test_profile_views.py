"""diff, exports (collapsed, speedscope, pprof decoded from its wire format) and the HTML report."""

from __future__ import annotations

import gzip
import json
import random
import re
import subprocess
import sys
import time

import pytest

from observability.profiling import ProfileStore
from observability.profiling._flamegraph import render_report
from observability.profiling._views import diff, to_collapsed, to_pprof, to_speedscope
from observability.profiling._windows import merge_windows
from tests.observability.profiling.synthetic import FEATURES, SCORE, costlier, window


def _window(seed: int = 1, **kwargs):
    return window(random.Random(seed), 0, **kwargs)


# -- a protobuf wire decoder, just enough for pprof -----------------------------------------------
def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def decode(data: bytes) -> dict[int, list]:
    """field number -> values (ints, or bytes for length-delimited fields)."""
    fields: dict[int, list] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i : i + size], i + size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def packed(data: bytes) -> list[int]:
    out, i = [], 0
    while i < len(data):
        value, i = _varint(data, i)
        out.append(value)
    return out


def test_pprof_decodes_to_the_same_samples_and_functions():
    w = _window()
    profile = decode(gzip.decompress(to_pprof(w, interval_us=500)))
    strings = [s.decode() for s in profile[6]]
    assert strings[0] == ""
    assert [(strings[decode(v)[1][0]], strings[decode(v)[2][0]]) for v in profile[1]] == [
        ("samples", "count"),
        ("cpu", "nanoseconds"),
    ]
    functions = {decode(f)[1][0]: strings[decode(f)[2][0]] for f in profile[5]}
    locations = {decode(loc)[1][0]: decode(decode(loc)[4][0])[1][0] for loc in profile[4]}
    seen: dict[str, int] = {}
    for raw in profile[2]:
        sample = decode(raw)
        ids, (count, nanos) = packed(sample[1][0]), packed(sample[2][0])
        assert nanos == count * 500_000
        leaf = functions[locations[ids[0]]]  # leaf first
        seen[leaf] = seen.get(leaf, 0) + count
    own = w.self_counts()
    assert seen == {label.rpartition(":")[2]: n for label, n in own.items()}
    assert profile[12] == [500_000]


def test_collapsed_and_speedscope_hold_every_sample():
    w = _window()
    lines = to_collapsed(w).splitlines()
    assert {line.rpartition(" ")[0]: int(line.rpartition(" ")[2]) for line in lines} == dict(w.stacks)
    doc = to_speedscope(w, "model")
    profile = doc["profiles"][0]
    assert profile["type"] == "sampled" and sum(profile["weights"]) == sum(w.stacks.values())
    frames = doc["shared"]["frames"]
    assert {frames[s[-1]]["name"] for s in profile["samples"]} == {
        f.rpartition(":")[2] for f in w.self_counts()
    }
    json.dumps(doc)


def test_diff_puts_the_grown_function_first():
    before = _window(1)
    after = _window(2, costs=costlier(SCORE, 1.5))
    rows = diff(before, after)
    assert rows[0].function in (SCORE, FEATURES)
    score = next(r for r in rows if r.function == SCORE)
    assert score.after_self > score.before_self * 1.2


def test_the_report_is_one_self_contained_file_with_a_differential_flame_graph():
    before = merge_windows([_window(1), _window(2)])
    after = merge_windows([_window(3, costs=costlier(SCORE, 1.5)), _window(4, costs=costlier(SCORE, 1.5))])
    alert = {"state": "active", "function": {"name": "Model.score_signal", "file": "model.py", "line": 9}}
    page = render_report(before, after, title="t", before_name="b", after_name="a", alerts=[alert])
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert re.findall(r"(?:src|href)=", page) == []  # nothing to fetch
    assert re.findall(r"https?://", page) == ["http://"]  # only the SVG namespace
    grew = re.search(
        r"Model\.score_signal \(model\.py\)\nafter[^<]*</title><rect [^>]*fill=\"rgb\((\d+),(\d+),(\d+)\)",
        page,
    )
    assert grew is not None
    red, green, blue = (int(x) for x in grew.groups())
    assert red > blue and red > green  # grew: red
    assert "Model.score_signal" in page and "model.py:9" in page


@pytest.fixture
def store_dir(tmp_path):
    rng = random.Random(5)
    with ProfileStore(tmp_path / "profiles.sqlite") as store:
        for i in range(6):
            store.add(window(rng, i, version="1.0"))
        for i in range(6, 12):
            store.add(window(rng, i, version="1.1", costs=costlier(SCORE, 1.4)))
    return tmp_path


def tickbus(*args: str, data_dir) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickbus", "profile", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_diffs_versions_exports_and_writes_the_report(store_dir):
    out = tickbus("diff", "--actor", "model", "--versions", "1.0", "1.1", data_dir=store_dir)
    assert out.returncode == 0, out.stderr
    assert "before: version 1.0" in out.stdout
    table = out.stdout.splitlines()[3]
    assert "Model.score_signal" in table and "+" in table
    out = tickbus("export", "--format", "pprof", "-o", str(store_dir / "p.pb.gz"), data_dir=store_dir)
    assert out.returncode == 0, out.stderr
    assert decode(gzip.decompress((store_dir / "p.pb.gz").read_bytes()))[2]
    out = tickbus("export", "--format", "collapsed", "--version", "1.0", data_dir=store_dir)
    assert out.returncode == 0 and out.stdout.count("\n") >= 5
    out = tickbus("export", "--format", "speedscope", "--last", "2", data_dir=store_dir)
    assert json.loads(out.stdout)["profiles"][0]["type"] == "sampled"
    out = tickbus("report", "-o", str(store_dir / "r.html"), data_dir=store_dir)
    assert out.returncode == 0 and (store_dir / "r.html").read_text().count("<rect") > 5


def test_the_report_shows_the_alerts_of_rotated_alerts_files_too(store_dir):
    def alert(name: str) -> str:
        function = {"name": name, "file": "model.py", "line": 9}
        return json.dumps({"state": "active", "actor": "model", "function": function, "detected_at": time.time()})

    # the collector rotates alerts.jsonl at 32 MiB: older alerts live in alerts.<UTC time>Z.jsonl
    (store_dir / "alerts.20261201T000000000000Z.jsonl").write_text(alert("Model.rotated_out") + "\n")
    (store_dir / "alerts.jsonl").write_text(alert("Model.current") + "\n")
    out = tickbus("report", "-o", str(store_dir / "r.html"), data_dir=store_dir)
    assert out.returncode == 0, out.stderr
    page = (store_dir / "r.html").read_text()
    assert "Model.rotated_out" in page and "Model.current" in page


def test_the_cli_says_what_is_missing(store_dir, tmp_path):
    out = tickbus("diff", "--versions", "1.0", "9.9", data_dir=store_dir)
    assert out.returncode == 1 and "no windows of 'model' in version '9.9'" in out.stderr
    out = tickbus("export", "--format", "pprof", data_dir=store_dir)
    assert out.returncode == 1 and "pprof is binary: give --output FILE" in out.stderr
    out = tickbus("report", "-o", "x.html", data_dir=tmp_path / "empty")
    assert out.returncode != 0 and "no profile store" in out.stderr
    (tmp_path / "full.html").symlink_to("/dev/full")  # a full disk: a line, not a traceback
    out = tickbus("report", "-o", str(tmp_path / "full.html"), data_dir=store_dir)
    assert out.returncode == 1 and "No space left on device" in out.stderr and "Traceback" not in out.stderr


def test_diff_marks_a_change_of_a_few_samples_not_significant_and_a_real_rise_significant():
    from observability.profiling import ProfileWindow, WindowLabels, format_diff

    rng = random.Random(3)
    befores = [window(rng, i) for i in range(6)]
    afters = [window(rng, 6 + i, costs=costlier(SCORE, 1.5)) for i in range(6)]
    labels = WindowLabels("h", "model", 1, ("model",), "1.0")
    rare = "model.py:Model.rarely_called"
    # a function seen once before and 6 times after: +500 %, and noise
    noisy = [
        ProfileWindow(labels, w.start, w.end, w.samples + n, w.cpu_us, {**w.stacks, f"app.py:main;{rare}": n})
        for w, n in ((befores[0], 1), (afters[0], 6))
    ]
    before, after = merge_windows([noisy[0], *befores[1:]]), merge_windows([noisy[1], *afters[1:]])
    rows = {r.function: r for r in diff(before, after, before_windows=[noisy[0], *befores[1:]])}
    assert (rows[rare].before_samples, rows[rare].after_samples) == (1, 6)
    assert not rows[rare].significant and rows[rare].q_value > 0.01
    assert rows[SCORE].significant and rows[SCORE].q_value < 1e-6
    text = format_diff(before, after, before_name="a", after_name="b", before_windows=befores)
    line = next(line for line in text.splitlines() if "rarely_called" in line)
    assert "~+" in line and "1->6" in line
    score_line = next(line for line in text.splitlines() if "score_signal" in line)
    assert "~" not in score_line
    assert text.splitlines()[-1].startswith("~ not significant: within sampling noise")
    page = render_report(before, after, title="t", before_name="a", after_name="b", before_windows=befores)
    assert "~+" in page and "1&rarr;6" in page and "not significant" in page


def test_diff_of_identical_sides_marks_nothing_significant():
    rng = random.Random(4)
    before = merge_windows([window(rng, i) for i in range(4)])
    rows = diff(before, before)
    assert rows and not any(r.significant for r in rows)


def test_hello_chosen_group_host_and_version_names_are_printed_as_escapes(tmp_path):
    from observability.profiling import ProfileWindow, WindowLabels

    group, host, version = "g\x1b[2J", "h\x1b]8;;https://evil.example\x07x", "1.0\x1b[31m\n2"
    now = time.time()
    with ProfileStore(tmp_path / "profiles.sqlite") as store:
        labels = WindowLabels(host, group, 7, (group,), version)
        for i in range(2):
            end = now - 1 - 20.0 * (1 - i)
            store.add(ProfileWindow(labels, end - 20.0, end, 100, 1_000_000, {"m.py:main": 100}, {group: 50}))
    for command in (("status",), ("windows",), ("top",)):
        out = tickbus(*command, data_dir=tmp_path)
        assert out.returncode == 0, out.stderr
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in out.stdout), out.stdout
        assert "g\\x1b[2J" in out.stdout and "1.0\\x1b[31m\\x0a2" in out.stdout, out.stdout
    status = tickbus("status", data_dir=tmp_path).stdout.splitlines()
    assert len(status) == 2  # the newline in the version forges no line
    cells = status[1].split()
    assert cells[:3] == ["g\\x1b[2J", "h\\x1b]8;;https://evil.example\\x07x", "1.0\\x1b[31m\\x0a2"]
    assert cells[3].startswith("2/")
