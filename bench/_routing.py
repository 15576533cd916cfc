"""Routing cost: how long tickbus's subscription index takes to find the subscribers of a key.

In-process, tickbus only: ``broker._index.SubscriptionIndex`` filled with 10 / 1,000 / 10,000
patterns, then ``match_uncached`` (the raw trie walk) and ``match`` (with the per-key cache, warm)
timed over the stream of recorded production keys, in recorded order.

Data: ``shared/data/aiopubsub_recorded_keys.json.bz2``, 2,024,283 ``[key, pattern, should_match]``
triples recorded from a production trading application and anonymised. Source: the test assets of
qntln/aiopubsub (``aiopubsub/tests/assets/real_recorded_published_keys.json.bz2``), Copyright 2016
Quantlane s.r.o., licensed under the Apache License, Version 2.0. Reading it takes ~15 s and ~2 GB,
so the distinct keys, the key stream and the distinct patterns are cached in a small JSON file.

The data has only 489 distinct patterns (and 502 distinct keys), so larger pattern sets add
synthetic ones made from recorded keys (seeded): segments replaced by ``'*'``, truncation with a
trailing ``'*'``, or one segment swapped for an unseen instrument-like token (a subscription for
something nobody publishes, as real systems have).
"""

from __future__ import annotations

import bz2
import json
import os
import random
import string
import time
from pathlib import Path
from typing import Any

DATA = Path(os.environ.get("TICKBUS_RECORDED_KEYS", Path(__file__).resolve().parents[2] / "shared" / "data"))
DATA_FILE = DATA / "aiopubsub_recorded_keys.json.bz2" if DATA.is_dir() else DATA
SIZES = (10, 1_000, 10_000)
SEED = 20_161_024
ATTRIBUTION = (
    "recorded keys: qntln/aiopubsub test assets, Copyright 2016 Quantlane s.r.o., Apache License 2.0"
)

Pattern = tuple[str, ...]


def load_recorded(path: Path = DATA_FILE) -> dict[str, list[list[str]]]:
    """``{"stream": keys in recorded order (runs collapsed), "patterns": distinct patterns}``, cached."""
    stat = path.stat()
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tickbus-bench"
    cache = cache_dir / f"recorded-keys-{stat.st_size}-{int(stat.st_mtime)}.json"
    if cache.exists():
        cached: dict[str, list[list[str]]] = json.loads(cache.read_text())
        return cached
    with bz2.open(path) as handle:
        triples = json.load(handle)
    stream: list[list[str]] = []
    patterns: dict[tuple[str, ...], None] = {}
    for key, pattern, _ in triples:
        if not stream or stream[-1] != key:
            stream.append(key)
        patterns.setdefault(tuple(pattern), None)
    del triples
    found = {"stream": stream, "patterns": [list(p) for p in patterns]}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(found))
    tmp.replace(cache)
    return found


def _token(rng: random.Random, like: str) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(max(3, len(like))))


def synthetic_patterns(
    keys: list[Pattern], exclude: set[Pattern], want: int, seed: int = SEED
) -> list[Pattern]:
    """``want`` distinct realistic patterns derived from ``keys``, none in ``exclude`` (seeded)."""
    rng = random.Random(seed)
    made: dict[Pattern, None] = {}
    for _ in range(want * 50):
        if len(made) >= want:
            break
        key = list(rng.choice(keys))
        roll = rng.random()
        if roll < 0.4 and len(key) > 1:  # one or two middle/tail segments become '*'
            for i in rng.sample(range(1, len(key)), k=min(len(key) - 1, rng.choice((1, 1, 2)))):
                key[i] = "*"
        elif roll < 0.7 and len(key) > 1:  # a prefix subscription: first n segments, then '*'
            key = [*key[: rng.randrange(1, len(key))], "*"]
        else:  # a subscription for an instrument nobody publishes (plus, sometimes, a wildcard)
            i = rng.randrange(1, len(key)) if len(key) > 1 else 0
            key[i] = _token(rng, key[i])
            if len(key) > 2 and rng.random() < 0.3:
                key[rng.randrange(1, len(key) - 1)] = "*"
        pattern = tuple(key)
        if any(part != "*" for part in pattern) and pattern not in exclude:
            made.setdefault(pattern, None)
    return list(made)


def pattern_pool(recorded: dict[str, list[list[str]]], size: int) -> list[Pattern]:
    """``size`` distinct patterns: recorded ones first (seeded sample), then synthetic ones."""
    real = sorted({tuple(p) for p in recorded["patterns"]})
    rng = random.Random(SEED)
    if size <= len(real):
        return rng.sample(real, size)
    keys = sorted({tuple(k) for k in recorded["stream"]})
    extra = synthetic_patterns(keys, set(real), size - len(real))
    if len(extra) < size - len(real):
        raise ValueError(f"could only make {len(extra)} synthetic patterns, needed {size - len(real)}")
    return real + extra


def _time_per_key(match: Any, stream: list[Pattern], min_s: float) -> float:
    """Nanoseconds per ``match(key)`` over ``stream``, repeated for at least ``min_s`` seconds."""
    passes, elapsed = 0, 0
    budget = int(min_s * 1e9)
    while elapsed < budget:
        start = time.perf_counter_ns()
        for key in stream:
            match(key)
        elapsed += time.perf_counter_ns() - start
        passes += 1
    return elapsed / (passes * len(stream))


def measure(min_s: float = 0.5, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """Cached and uncached ns per message for each pattern count (raises ImportError without tickbus)."""
    from broker import SubscriptionIndex

    recorded = load_recorded()
    stream = [tuple(k) for k in recorded["stream"]]
    out: dict[str, Any] = {
        "keys_in_stream": len(stream),
        "distinct_keys": len(set(stream)),
        "recorded_patterns": len(recorded["patterns"]),
        "attribution": ATTRIBUTION,
        "sizes": {},
    }
    for size in sizes:
        patterns = pattern_pool(recorded, size)
        index: Any = SubscriptionIndex()
        started = time.perf_counter()
        for value, pattern in enumerate(patterns):
            index.add(pattern, value)
        build_s = time.perf_counter() - started
        matched = sum(len(index.match_uncached(key)) for key in stream)
        uncached = _time_per_key(index.match_uncached, stream, min_s)
        for key in stream:  # warm the cache: steady state, as keys repeat in production
            index.match(key)
        cached = _time_per_key(index.match, stream, min_s)
        out["sizes"][str(size)] = {
            "patterns": len(patterns),
            "uncached_ns": uncached,
            "cached_ns": cached,
            "matches_per_key": matched / len(stream),
            "build_ms": build_s * 1e3,
        }
    return out
