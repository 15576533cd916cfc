"""Views of stored profiles: a diff table and exports (speedscope JSON, collapsed stacks, pprof).

Pure functions of :class:`~observability._windows.ProfileWindow` objects (usually one merged window
per side); ``tickbus profile diff|export`` (:mod:`observability._profile_views_cli`) calls them.

- **collapsed**: ``outer;...;leaf count`` per line, Brendan Gregg's format for ``flamegraph.pl``.
- **speedscope**: the "sampled" profile of speedscope's file format (one stack of frame indices per
  distinct stack, weighted by its count), openable at speedscope.app or offline.
- **pprof**: the ``perftools.profiles.Profile`` protobuf, gzip-compressed, written by hand on the
  protobuf wire format (only varints and length-delimited fields are needed), so no generated code
  and no protobuf 4 (austin-python pins protobuf 3): ``go tool pprof -top profile.pb.gz`` reads it.
  Values are ``samples/count`` and ``cpu/nanoseconds`` (samples times the sampling interval).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._windows import FRAME_SEPARATOR, ProfileWindow

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def split_label(label: str) -> tuple[str, str]:
    """``(file, function)`` of a frame label ``file:function``."""
    file, sep, function = label.rpartition(":")
    return (file, function) if sep else ("", label)


# -- diff ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DiffRow:
    """One function's shares before and after."""

    function: str
    before_self: float
    after_self: float
    before_inclusive: float
    after_inclusive: float

    @property
    def change(self) -> float:
        """Change of the self share, in share points."""
        return self.after_self - self.before_self


def diff(before: ProfileWindow, after: ProfileWindow) -> list[DiffRow]:
    """Every function's self and inclusive share on both sides, largest self-share change first."""
    total_b = sum(before.stacks.values()) or 1
    total_a = sum(after.stacks.values()) or 1
    own_b, own_a = before.self_counts(), after.self_counts()
    inc_b, inc_a = before.inclusive_counts(), after.inclusive_counts()
    rows = [
        DiffRow(f, own_b[f] / total_b, own_a[f] / total_a, inc_b[f] / total_b, inc_a[f] / total_a)
        for f in set(inc_b) | set(inc_a)
    ]
    rows.sort(key=lambda r: (-abs(r.change), -abs(r.after_inclusive - r.before_inclusive), r.function))
    return rows


def _relative(before: float, after: float) -> str:
    if before == 0:
        return "new" if after else "-"
    return f"{after / before - 1:+.1%}"


def format_diff(
    before: ProfileWindow, after: ProfileWindow, *, before_name: str, after_name: str, limit: int = 20
) -> str:
    """The ``tickbus profile diff`` report: a head line per side and the table of changes."""
    from ._profiler_cli import _table, short_function

    head = [
        f"before: {before_name}: {before.samples} samples, {before.handled_total} handled",
        f"after:  {after_name}: {after.samples} samples, {after.handled_total} handled",
    ]
    rows: list[tuple[str, ...]] = [
        ("SELF BEFORE", "SELF AFTER", "CHANGE", "INCL BEFORE", "INCL AFTER", "FUNCTION")
    ]
    for r in diff(before, after)[: max(0, limit)]:
        rows.append(
            (
                f"{r.before_self:.1%}",
                f"{r.after_self:.1%}",
                _relative(r.before_self, r.after_self),
                f"{r.before_inclusive:.1%}",
                f"{r.after_inclusive:.1%}",
                short_function(r.function),
            )
        )
    return "\n".join(head) + "\n" + _table(rows)


# -- exports ------------------------------------------------------------------------------------
def to_collapsed(window: ProfileWindow) -> str:
    """Collapsed stacks for ``flamegraph.pl``: ``a;b;c 12`` per line, most frequent first."""
    ordered = sorted(window.stacks.items(), key=lambda item: (-item[1], item[0]))
    return "".join(f"{stack} {count}\n" for stack, count in ordered)


def to_speedscope(window: ProfileWindow, name: str) -> dict[str, Any]:
    """A speedscope file (``sampled`` profile, weights in samples)."""
    index: dict[str, int] = {}
    frames: list[dict[str, str]] = []
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, count in sorted(window.stacks.items()):
        ids = []
        for label in stack.split(FRAME_SEPARATOR):
            if label not in index:
                index[label] = len(frames)
                file, function = split_label(label)
                frames.append({"name": function, "file": file})
            ids.append(index[label])
        samples.append(ids)
        weights.append(count)
    total = sum(weights)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "name": name,
        "exporter": "tickbus profile export",
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            }
        ],
    }


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 values are two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _packed(number: int, values: Iterable[int]) -> bytes:
    return _field_bytes(number, b"".join(_varint(v) for v in values))


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = [""]
        self._index: dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.table)
            self.table.append(text)
        return self._index[text]


def to_pprof(window: ProfileWindow, interval_us: int = 10_000) -> bytes:
    """The window as a gzip-compressed pprof ``Profile`` (see the module docstring)."""
    strings = _Strings()
    body = bytearray()
    for kind, unit in (("samples", "count"), ("cpu", "nanoseconds")):
        body += _field_bytes(1, _field_varint(1, strings(kind)) + _field_varint(2, strings(unit)))
    locations: dict[str, int] = {}
    for stack, count in sorted(window.stacks.items()):
        ids = []
        for label in reversed(stack.split(FRAME_SEPARATOR)):  # pprof: leaf first
            if label not in locations:
                locations[label] = len(locations) + 1
            ids.append(locations[label])
        sample = _packed(1, ids) + _packed(2, [count, count * interval_us * 1000])
        body += _field_bytes(2, sample)
    for ident in locations.values():  # location i has function i, one line each
        body += _field_bytes(4, _field_varint(1, ident) + _field_bytes(4, _field_varint(1, ident)))
    for label, ident in locations.items():
        file, function = split_label(label)
        fn = _field_varint(1, ident) + _field_varint(2, strings(function))
        fn += _field_varint(3, strings(function)) + _field_varint(4, strings(file))
        body += _field_bytes(5, fn)
    tail = _field_varint(9, int(window.start * 1e9)) + _field_varint(
        10, int((window.end - window.start) * 1e9)
    )
    tail += _field_bytes(11, _field_varint(1, strings("cpu")) + _field_varint(2, strings("nanoseconds")))
    tail += _field_varint(12, interval_us * 1000)
    table = b"".join(_field_bytes(6, s.encode()) for s in strings.table)  # after the last strings() call
    return gzip.compress(bytes(body) + table + tail)


def export(window: ProfileWindow, fmt: str, *, name: str, interval_us: int = 10_000) -> bytes:
    """``window`` in ``fmt`` (``speedscope``, ``collapsed`` or ``pprof``) as bytes to write."""
    if fmt == "collapsed":
        return to_collapsed(window).encode()
    if fmt == "speedscope":
        return json.dumps(to_speedscope(window, name)).encode()
    if fmt == "pprof":
        return to_pprof(window, interval_us)
    raise ValueError(f"unknown export format {fmt!r}; use speedscope, collapsed or pprof")
