"""The subscription index: which subscribers' patterns match a published key.

Problem: a process may hold thousands of patterns, and every received message must find the ones
that match its key in well under a microsecond.

Approach: a trie over pattern segments. Each node has literal children, one wildcard child, the
values of patterns that end there *exactly* (key length equals pattern length) and the values of
patterns that end there with a trailing ``'*'`` (key at least that long). Matching walks the key
once, following at each depth the literal child for the segment and the wildcard child, so the cost
grows with the key's length and the number of wildcard branches, not with the number of patterns.
On top sits a cache from key to the tuple of matching values, cleared whenever a pattern is added
or removed (subscriptions change rarely; keys repeat constantly).

Limits: the cache is bounded (``cache_size``) and simply cleared when full; values must be hashable
and are returned in no particular order across different patterns (within a pattern, in the
order they were added).
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ._keys import RESERVED_PREFIX, WILDCARD

V = TypeVar("V")


class _Node(Generic[V]):
    __slots__ = ("children", "exact", "open", "star")

    def __init__(self) -> None:
        self.children: dict[str, _Node[V]] = {}
        self.star: _Node[V] | None = None
        self.exact: list[V] = []  # patterns ending here without a trailing '*'
        self.open: list[V] = []  # patterns ending here with a trailing '*'

    def empty(self) -> bool:
        return not (self.children or self.star or self.exact or self.open)


class SubscriptionIndex(Generic[V]):
    """A trie of patterns with a per-key result cache. Not thread-safe (asyncio, one loop)."""

    def __init__(self, *, cache_size: int = 65_536) -> None:
        self._root: _Node[V] = _Node()
        self._cache: dict[tuple[str, ...], tuple[V, ...]] = {}
        self._cache_size = cache_size
        self._patterns: dict[tuple[str, ...], int] = {}

    def __len__(self) -> int:
        """Number of (pattern, value) entries."""
        return sum(self._patterns.values())

    def patterns(self) -> list[tuple[str, ...]]:
        """Every distinct pattern with at least one value."""
        return list(self._patterns)

    def add(self, pattern: tuple[str, ...], value: V) -> bool:
        """Add ``value`` under ``pattern``; False when that exact pair was already present."""
        bucket = self._walk(pattern, create=True)
        assert bucket is not None
        if value in bucket:
            return False
        bucket.append(value)
        self._patterns[pattern] = self._patterns.get(pattern, 0) + 1
        self._cache.clear()
        return True

    def remove(self, pattern: tuple[str, ...], value: V) -> bool:
        """Remove ``value`` from ``pattern``; False when it was not there."""
        bucket = self._walk(pattern, create=False)
        if bucket is None or value not in bucket:
            return False
        bucket.remove(value)
        left = self._patterns[pattern] - 1
        if left:
            self._patterns[pattern] = left
        else:
            del self._patterns[pattern]
            self._prune(pattern)
        self._cache.clear()
        return True

    def match(self, key: tuple[str, ...]) -> tuple[V, ...]:
        """Every value whose pattern matches ``key`` (cached)."""
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self.match_uncached(key)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[key] = found
        return found

    def match_uncached(self, key: tuple[str, ...]) -> tuple[V, ...]:
        """The trie walk itself, without the cache (for benchmarks and the oracle test)."""
        out: list[V] = []
        size = len(key)
        frontier = [self._root]
        for depth, segment in enumerate(key):
            following: list[_Node[V]] = []
            skip_star = depth == 0 and segment.startswith(RESERVED_PREFIX)
            for node in frontier:
                if segment != WILDCARD:
                    child = node.children.get(segment)
                    if child is not None:
                        following.append(child)
                star = node.star
                if star is not None and not skip_star:
                    if star.open:
                        out.extend(star.open)
                    following.append(star)
            if not following:
                return tuple(out)
            frontier = following
        for node in frontier:
            if node.exact:
                out.extend(node.exact)
        if size == 0:
            return tuple(self._root.exact)
        return tuple(out)

    def _walk(self, pattern: tuple[str, ...], *, create: bool) -> list[V] | None:
        node = self._root
        for part in pattern:
            if part == WILDCARD:
                nxt = node.star
                if nxt is None:
                    if not create:
                        return None
                    nxt = node.star = _Node()
            else:
                nxt = node.children.get(part)
                if nxt is None:
                    if not create:
                        return None
                    nxt = node.children[part] = _Node()
            node = nxt
        if pattern and pattern[-1] == WILDCARD:
            return node.open
        return node.exact

    def _prune(self, pattern: tuple[str, ...]) -> None:
        path: list[tuple[_Node[V], str]] = []
        node = self._root
        for part in pattern:
            path.append((node, part))
            nxt = node.star if part == WILDCARD else node.children.get(part)
            if nxt is None:
                return
            node = nxt
        for parent, part in reversed(path):
            child = parent.star if part == WILDCARD else parent.children[part]
            if child is None or not child.empty():
                return
            if part == WILDCARD:
                parent.star = None
            else:
                del parent.children[part]
