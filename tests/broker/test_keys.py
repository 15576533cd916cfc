"""Keys, patterns and the wire form, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import InvalidKeyError, Key, decode_key, encode_key, matches, subscription_prefix
from broker._index import SubscriptionIndex

SEGMENTS = st.sampled_from(["a", "b", "c", "*", "$sys", "ab", "é"])
KEYS = st.lists(st.sampled_from(["a", "b", "c", "ab", "é", "$sys", "*"]), min_size=0, max_size=5).map(tuple)
PATTERNS = st.lists(SEGMENTS, min_size=1, max_size=5).map(tuple)


@pytest.mark.parametrize(
    ("key", "pattern", "expected"),
    [
        (("a", "b"), ("a", "b"), True),
        (("a", "b", "c"), ("a", "b"), False),
        (("a", "x", "c"), ("a", "*", "c"), True),
        (("a", "c"), ("a", "*", "c"), False),
        (("a", "x", "y", "c"), ("a", "*", "c"), False),
        (("a", "b"), ("a", "*"), True),
        (("a", "b", "c"), ("a", "*"), True),
        (("a",), ("a", "*"), False),
        (("a", "*"), ("a", "*"), True),
        (("a", "*"), ("a", "b"), False),
        (("$broker", "stats"), ("*", "stats"), False),
        (("$broker", "stats"), ("*",), False),
        (("$broker", "stats"), ("$broker", "*"), True),
        (("x", "$y"), ("x", "*"), True),
    ],
)
def test_matching_follows_aiopubsub_semantics_with_reserved_keys(key, pattern, expected):
    assert matches(key, pattern) is expected
    assert Key(*key).is_subset_of(Key(*pattern)) is expected


def test_key_is_a_tuple_with_aiopubsub_helpers():
    key = Key("a", "b")
    assert key == ("a", "b")
    assert isinstance(key + ("c",), Key)
    assert key + ("c",) == ("a", "b", "c")
    assert Key.create_from("a") == ("a",)
    assert Key.create_from(["a", "b"]) == key
    assert Key("a", "*").is_wildcard and not key.is_wildcard


@given(KEYS, PATTERNS)
def test_index_agrees_with_the_reference_matcher(key, pattern):
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add(pattern, "p")
    index.add(("zz", "*"), "other")
    assert ("p" in index.match(key)) is matches(key, pattern)
    assert ("p" in index.match_uncached(key)) is matches(key, pattern)


@given(st.lists(PATTERNS, min_size=1, max_size=12), KEYS, st.data())
def test_index_stays_correct_as_patterns_come_and_go(patterns, key, data):
    index: SubscriptionIndex[int] = SubscriptionIndex()
    for i, pattern in enumerate(patterns):
        index.add(pattern, i)
    gone = set(data.draw(st.sets(st.integers(0, len(patterns) - 1))))
    index.match(key)  # fill the cache, which removals must invalidate
    for i in gone:
        assert index.remove(patterns[i], i)
    expected = {i for i, p in enumerate(patterns) if i not in gone and matches(key, p)}
    assert set(index.match(key)) == expected
    assert len(index) == len(patterns) - len(gone)


def test_index_prunes_empty_branches():
    index: SubscriptionIndex[int] = SubscriptionIndex()
    index.add(("a", "*", "c"), 1)
    assert index.remove(("a", "*", "c"), 1)
    assert not index.remove(("a", "*", "c"), 1)
    assert index.patterns() == []
    assert index._root.empty()


@given(KEYS, PATTERNS)
def test_wire_prefix_never_filters_out_a_matching_key(key, pattern):
    if "*" in key:
        return  # wildcard segments are not published
    if matches(key, pattern):
        assert encode_key(key).startswith(subscription_prefix(pattern))


@given(st.lists(st.text(min_size=0, max_size=8).filter(lambda s: "\x00" not in s), max_size=6).map(tuple))
def test_wire_form_round_trips(key):
    assert decode_key(encode_key(key)) == key


def test_segments_are_terminated_so_prefixes_do_not_bleed():
    assert not encode_key(("ab",)).startswith(subscription_prefix(("a", "*")))
    assert encode_key(("a", "b")) == b"a\x00b\x00"
    assert subscription_prefix(("a", "*", "c")) == b"a\x00"
    assert subscription_prefix(("*",)) == b""


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (("a\x00b",), "NUL byte inside segment"),
        (("a", 3), "segment 3 that is not a string"),
    ],
)
def test_invalid_keys_are_refused_with_the_reason(bad, message):
    with pytest.raises(InvalidKeyError, match=message):
        encode_key(bad)


@pytest.mark.parametrize("frame", [b"a\x00b", b"\xff\xfe\x00"])
def test_bad_key_frames_raise_invalid_key_error(frame):
    with pytest.raises(InvalidKeyError):
        decode_key(frame)
