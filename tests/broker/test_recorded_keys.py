"""Matching agrees with all 2,024,283 recorded production (key, pattern, should_match) triples.

The data: ../shared/data/aiopubsub_recorded_keys.json.bz2 (Copyright 2016 Quantlane s.r.o., Apache
License 2.0; from qntln/aiopubsub's test assets, redistributed unchanged).
"""

from __future__ import annotations

import bz2
import json
from pathlib import Path

import pytest

from actors import matches
from broker._index import SubscriptionIndex

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "aiopubsub_recorded_keys.json.bz2"


@pytest.fixture(scope="module")
def triples() -> list[list]:
    if not DATA.exists():
        pytest.fail(f"recorded keys not found at {DATA}; the shared/ folder must sit beside the checkout")
    with bz2.open(DATA) as handle:
        return json.load(handle)


def test_recorded_data_has_the_documented_size(triples):
    assert len(triples) == 2_024_283
    assert sum(1 for t in triples if t[2]) == 7_065


def test_reference_matcher_agrees_with_every_recorded_triple(triples):
    wrong = [t for t in triples if matches(tuple(t[0]), tuple(t[1])) is not t[2]]
    assert wrong == []


def test_index_agrees_with_every_recorded_triple(triples):
    patterns = sorted({tuple(p) for _, p, _ in triples})
    ids = {p: i for i, p in enumerate(patterns)}
    index: SubscriptionIndex[int] = SubscriptionIndex()
    for pattern, i in ids.items():
        index.add(pattern, i)
    wrong = [t for t in triples if (ids[tuple(t[1])] in index.match(tuple(t[0]))) is not t[2]]
    assert wrong == []
    uncached = {tuple(k): set(index.match_uncached(tuple(k))) for k, _, _ in triples[:50_000]}
    assert all(set(index.match(k)) == v for k, v in uncached.items())
