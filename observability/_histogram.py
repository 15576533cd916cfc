"""A cheap local histogram for the hot path: fixed log-linear buckets, plain ints, no locks.

Problem: percentiles of handler times, loop lag and end-to-end latency, recorded per message at a
cost of well under a microsecond, exported periodically.

Approach: values are non-negative integers (nanoseconds). A value below 16 has its own bucket;
above, the bucket is its power of two and the next three bits (8 sub-buckets per octave), so any
value is placed within 12.5 % of its true size. ``record`` is a few integer operations and a list
increment. Percentiles report the upper bound of the bucket that holds them (never optimistic).

Limits: values above 2**63 are clamped; bucket boundaries are fixed, so two histograms always merge.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Iterable

_SUB_BITS = 3
_SUB = 1 << _SUB_BITS
_LINEAR = 2 * _SUB  # values below this get a bucket each
_BUCKETS = _LINEAR + (64 - _SUB_BITS - 1) * _SUB


def _index(value: int) -> int:
    if value < _LINEAR:
        return max(value, 0)
    shift = value.bit_length() - _SUB_BITS - 1
    return _LINEAR + (shift - 1) * _SUB + ((value >> shift) - _SUB)


def _upper(index: int) -> int:
    if index < _LINEAR:
        return index
    shift, sub = divmod(index - _LINEAR, _SUB)
    shift += 1
    return ((_SUB + sub + 1) << shift) - 1


class Histogram:
    """Log-linear histogram of non-negative integers (typically nanoseconds)."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0
        self.max = 0

    def record(self, value: int) -> None:
        """Add one value (negative values count as 0)."""
        if value < 0:
            value = 0
        elif value >= 1 << 63:
            value = (1 << 63) - 1
        self.counts[_index(value)] += 1
        self.count += 1
        self.total += value
        if value > self.max:  # noqa: PLR1730 -- a branch is cheaper than max() on the hot path
            self.max = value

    def percentile(self, q: float) -> int:
        """The value at or below which ``q`` percent of recorded values fall (bucket upper bound)."""
        if not self.count:
            return 0
        rank = max(1, -(-self.count * q // 100))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(_upper(index), self.max)
        return self.max

    def percentiles(self, qs: Iterable[float] = (50, 90, 99, 99.9)) -> dict[float, int]:
        """Several percentiles at once."""
        return {q: self.percentile(q) for q in qs}

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s values into this histogram."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def reset(self) -> None:
        """Forget everything recorded."""
        self.counts = [0] * _BUCKETS
        self.count = self.total = self.max = 0

    def min_bound(self) -> int:
        """The smallest value the lowest non-empty bucket holds: a lower bound of the minimum (0 if empty)."""
        for index, n in enumerate(self.counts):
            if n:
                return _upper(index - 1) + 1 if index else 0
        return 0

    def rebinned(self, limits: tuple[float, ...]) -> list[int]:
        """The counts in the ``len(limits) + 1`` coarser buckets an exporter has (ascending upper
        bounds ``limits``, in this histogram's unit, then +inf): a bucket goes to the first limit at
        or above its upper bound. A sum per coarse bucket, not a loop over the fine ones."""
        counts = self.counts
        return [sum(counts[start:stop]) for start, stop in _coarse_ranges(limits)]

    def bucket_bounds(self) -> list[tuple[int, int]]:
        """``(upper_bound, count)`` for every non-empty bucket, for exporters."""
        return [(_upper(i), n) for i, n in enumerate(self.counts) if n]


@functools.lru_cache(maxsize=8)
def _coarse_ranges(limits: tuple[float, ...]) -> tuple[tuple[int, int], ...]:
    """For each coarse bucket of :meth:`Histogram.rebinned`, the range of fine buckets it takes (the
    fine upper bounds ascend, so each coarse bucket takes a contiguous range, possibly empty)."""
    targets = [bisect_left(limits, _upper(index)) for index in range(_BUCKETS)]
    return tuple(
        (bisect_left(targets, coarse), bisect_left(targets, coarse + 1)) for coarse in range(len(limits) + 1)
    )
