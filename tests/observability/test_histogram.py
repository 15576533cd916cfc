"""The local histogram: bounded relative error, never-optimistic percentiles, merge."""

from __future__ import annotations

import random
from bisect import bisect_left

from hypothesis import given
from hypothesis import strategies as st

from observability import Histogram


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=500), st.sampled_from([50, 90, 99, 99.9, 100]))
def test_percentile_is_at_or_above_the_exact_value_and_within_an_eighth(values, q):
    h = Histogram()
    for v in values:
        h.record(v)
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    exact = ordered[int(rank) - 1]
    got = h.percentile(q)
    assert exact <= got <= max(exact * 1.125 + 1, exact)


def test_merge_equals_recording_everything_in_one():
    rng = random.Random(1)
    values = [rng.randrange(10**9) for _ in range(5000)]
    one, a, b = Histogram(), Histogram(), Histogram()
    for i, v in enumerate(values):
        one.record(v)
        (a if i % 2 else b).record(v)
    a.merge(b)
    assert a.counts == one.counts and a.count == one.count and a.max == one.max
    assert a.percentiles() == one.percentiles()


def test_empty_and_negative_values():
    h = Histogram()
    assert h.percentile(99) == 0
    h.record(-5)
    assert h.percentile(50) == 0 and h.count == 1


@given(
    st.lists(st.integers(0, 2**64), max_size=300),
    st.lists(st.floats(0.5, 1e13, allow_nan=False), min_size=1, max_size=30, unique=True).map(sorted),
)
def test_rebinned_puts_each_value_where_a_search_of_its_bucket_bound_does(values, limits):
    """``rebinned`` (the exporter's coarse buckets, a sum per range) agrees with placing each fine
    bucket by its upper bound one at a time, for any ascending limits, and loses no value."""
    h = Histogram()
    for v in values:
        h.record(v)
    expected = [0] * (len(limits) + 1)
    for upper, n in h.bucket_bounds():
        expected[bisect_left(limits, upper)] += n
    assert h.rebinned(tuple(limits)) == expected
    assert sum(expected) == len(values)
