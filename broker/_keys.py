"""Keys, patterns, and their wire form.

A key is a tuple of string segments, e.g. ``('quote', 'XNAS', 'AAPL')``. A pattern is a key that may
contain ``'*'`` segments, with aiopubsub's semantics exactly:

- a pattern without ``'*'`` matches only the equal key:
  ``('a', 'b')`` matches ``('a', 'b')`` and nothing else;
- a ``'*'`` that is not last matches exactly one segment:
  ``('a', '*', 'c')`` matches ``('a', 'x', 'c')`` but not ``('a', 'c')`` nor ``('a', 'x', 'y', 'c')``;
- a trailing ``'*'`` matches one or more segments:
  ``('a', '*')`` matches ``('a', 'b')`` and ``('a', 'b', 'c')`` but not ``('a',)``.

One addition for reserved keys (those whose first segment starts with ``'$'``, such as
``('$broker', 'stats')``): a pattern whose *first* segment is ``'*'`` does not match them, as in MQTT,
so a catch-all subscriber does not receive infrastructure traffic. Name them to get them:
``('$broker', '*')``.

Wire form: every segment UTF-8 encoded and terminated by a NUL byte, so ``('a', 'b')`` is
``b'a\\x00b\\x00'``. A pattern subscribes on the wire to the encoded segments before its first
``'*'``; ZeroMQ's prefix filter does the coarse filtering and the subscriber matches exactly.
Because every segment is terminated, the prefix ``b'a\\x00'`` never matches the key ``('ab',)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Union

from observability import InvalidKeyError

WILDCARD = "*"
RESERVED_PREFIX = "$"
_SEP = "\x00"


class Key(tuple[str, ...]):
    """An immutable tuple of string segments, possibly with ``'*'`` wildcards (aiopubsub-compatible).

    >>> Key('a', 'b') + ('c',)
    ('a', 'b', 'c')
    >>> Key('a', 'b').is_subset_of(Key('a', '*'))
    True
    """

    __slots__ = ()

    def __new__(cls, *components: str) -> Key:
        return super().__new__(cls, components)

    @property
    def is_wildcard(self) -> bool:
        """True when any segment is ``'*'``."""
        return WILDCARD in self

    def is_subset_of(self, another: tuple[str, ...]) -> bool:
        """True when this key is matched by the pattern ``another`` (see the module docstring)."""
        return matches(self, another)

    def __add__(self, other: Iterable[str]) -> Key:  # type: ignore[override]
        return Key(*self, *other)

    @classmethod
    def create_from(cls, x: PossibleKey) -> Key:
        """A Key from a string (one segment) or an iterable of strings."""
        if isinstance(x, Key):
            return x
        if isinstance(x, str):
            return cls(x)
        return cls(*x)


PossibleKey = Union[str, Iterable[str]]  # noqa: UP007 -- aiopubsub's public alias, kept by name


def matches(key: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    """Reference matcher: does ``pattern`` match ``key``? (the index must agree with this)."""
    if WILDCARD not in pattern:
        return tuple(key) == tuple(pattern)
    n_key, n_pat = len(key), len(pattern)
    if n_key < n_pat:
        return False
    if n_key > n_pat and pattern[-1] != WILDCARD:
        return False
    if pattern[0] == WILDCARD and key[0].startswith(RESERVED_PREFIX):
        return False
    return all(p in (WILDCARD, k) for k, p in zip(key, pattern, strict=False))


def is_reserved(key: tuple[str, ...]) -> bool:
    """True for infrastructure keys (first segment starts with ``'$'``)."""
    return bool(key) and key[0].startswith(RESERVED_PREFIX)


def validate(key: object, *, what: str = "key") -> Key:
    """Return ``key`` as a :class:`Key`, or raise :class:`InvalidKeyError` saying what is wrong."""
    if isinstance(key, str):
        key = (key,)
    try:
        parts: tuple[object, ...] = tuple(key)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidKeyError(
            f"{what} {key!r} is not a tuple of strings; pass e.g. ('quote', 'AAPL')"
        ) from None
    for part in parts:
        if not isinstance(part, str):
            raise InvalidKeyError(f"{what} {key!r} has a segment {part!r} that is not a string")
        if _SEP in part:
            raise InvalidKeyError(f"{what} {key!r} has a NUL byte inside segment {part!r}; remove it")
    return Key(*parts)  # type: ignore[arg-type]  # each part was checked to be a str above


def encode_key(key: tuple[str, ...]) -> bytes:
    """The wire form of a key (validated: raises :class:`InvalidKeyError`)."""
    try:
        text = _SEP.join(key)
    except TypeError:
        validate(key)
        raise
    if text.count(_SEP) != len(key) - 1:
        validate(key)  # raises with the precise reason
    if not key:
        return b""
    return (text + _SEP).encode()


def decode_key(data: bytes) -> Key:
    """The key of a wire frame; raises :class:`InvalidKeyError` when it is not a valid key frame."""
    if not data:
        return Key()
    if data[-1] != 0:
        raise InvalidKeyError(f"key frame {data[:40]!r} does not end with a NUL terminator")
    try:
        return Key(*data[:-1].decode().split(_SEP))
    except UnicodeDecodeError as exc:
        raise InvalidKeyError(f"key frame {data[:40]!r} is not UTF-8") from exc


def subscription_prefix(pattern: tuple[str, ...]) -> bytes:
    """The wire prefix a pattern subscribes to: the encoded segments before its first ``'*'``."""
    head: list[str] = []
    for part in pattern:
        if part == WILDCARD:
            break
        head.append(part)
    return encode_key(tuple(head))
