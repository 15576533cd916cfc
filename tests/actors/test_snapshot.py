"""The last-value cache and the Clone-pattern merge, socket-free."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import Key, Message
from actors._snapshot import SnapshotMerge, SnapshotRequest
from broker import Header, LastValueCache, encode_header, encode_key
from broker import parse_snapshot_request as parse_request


def _header(seq: int, publisher: str = "p@h:1:a") -> bytes:
    return encode_header(publisher, seq, 0, 0)


def test_the_cache_keeps_the_latest_per_key_and_ignores_reserved_keys():
    cache = LastValueCache(max_keys=10, max_bytes=1 << 20, patterns=[("*",)])
    cache.store(encode_key(("px", "a")), _header(1), b"\x01")
    cache.store(encode_key(("px", "a")), _header(2), b"\x02")
    cache.store(encode_key(("px", "b")), _header(1), b"\x03")
    cache.store(encode_key(("$bus", "hb", "x")), _header(1), b"\x04")
    assert [e[2] for e in cache.matching(("px", "*"))] == [b"\x02", b"\x03"]
    assert [e[2] for e in cache.matching(("px", "b"))] == [b"\x03"]
    assert cache.matching(("*",)) and not cache.matching(("$bus", "*"))
    assert cache.statistics().keys == 2 and cache.statistics().updates == 3


def test_the_cache_evicts_the_least_recently_updated_past_its_key_and_byte_bounds():
    cache = LastValueCache(max_keys=3, max_bytes=10_000, patterns=[("*",)])
    for name in "abcd":
        cache.store(encode_key(("k", name)), _header(1), b"x")
    assert [e[0] for e in cache.matching(("k", "*"))] == [encode_key(("k", n)) for n in "bcd"]
    cache.store(encode_key(("k", "b")), _header(2), b"x")  # b is now the most recent
    cache.store(encode_key(("k", "e")), _header(1), b"x")
    assert {e[0] for e in cache.matching(("k", "*"))} == {encode_key(("k", n)) for n in "bde"}
    small = LastValueCache(max_keys=100, max_bytes=1_000, patterns=[("*",)])
    for i in range(20):
        small.store(encode_key(("k", str(i))), _header(1), b"y" * 100)
    stats = small.statistics()
    assert stats.bytes <= 1_000 and stats.evicted == 20 - stats.keys and stats.keys >= 1


def test_patterns_restrict_what_is_cached_and_what_the_cache_subscribes_to():
    cache = LastValueCache(max_keys=10, max_bytes=1 << 20, patterns=[("px", "*"), ("q", "*", "bid")])
    assert cache.prefixes() == [b"px\x00", b"q\x00"]
    for key in [("px", "a"), ("other", "a"), ("q", "x", "bid"), ("q", "x", "ask")]:
        cache.store(encode_key(key), _header(1), b"1")
    assert cache.statistics().keys == 2  # px.a and q.x.bid
    assert cache.covers(("px", "*")) and cache.covers(("px", "a", "*")) and cache.covers(("q", "y", "bid"))
    assert not cache.covers(("*",)) and not cache.covers(("q", "*")) and not cache.covers(("q", "x", "*"))
    everything = LastValueCache(max_keys=10, max_bytes=1 << 20, patterns=[("*",)])
    assert b"$" not in everything.prefixes() and b"" not in everything.prefixes()
    assert len(everything.prefixes()) == 254
    assert everything.covers(("a", "*")) and not everything.covers(("$bus", "*"))


def test_a_large_reply_is_split_into_parts_and_an_empty_one_is_one_part():
    cache = LastValueCache(max_keys=10_000, max_bytes=1 << 30, patterns=[("k", "*")])
    for i in range(1_500):
        cache.store(encode_key(("k", str(i))), _header(1), b"z")
    parts = cache.parts("r1", ("k", "*"))
    assert [p["part"] for p in parts] == list(range(len(parts))) and len(parts) == 3
    assert sum(len(p["entries"]) for p in parts) == 1_500
    assert cache.parts("r2", ("none",)) == [{"id": "r2", "part": 0, "parts": 1, "entries": []}]


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {"id": "", "pattern": ["a"], "inbox": ["$lvc", "snap", "x"]},
        {"id": "r", "pattern": [], "inbox": ["$lvc", "snap", "x"]},
        {"id": "r", "pattern": ["a"], "inbox": ["elsewhere", "x"]},
        {"id": "r", "pattern": ["a", 1], "inbox": ["$lvc", "snap", "x"]},
    ],
)
def test_malformed_snapshot_requests_are_refused(payload: object):
    with pytest.raises(ValueError):
        parse_request(payload)


async def test_reply_parts_may_arrive_in_any_order_and_bad_entries_are_counted():
    request = SnapshotRequest("r")
    good = [encode_key(("px", "a")), _header(3), msgpack.packb(5)]
    request.add_part({"id": "r", "part": 1, "parts": 2, "entries": [good]})
    assert not request.done.done()
    request.add_part({"id": "r", "part": 0, "parts": 2, "entries": [[b"no-nul", _header(1), b"\x01"], ["x"]]})
    messages = await asyncio.wait_for(request.done, 1)
    assert [(m.key, m.payload, m.header.seq) for m in messages] == [(Key("px", "a"), 5, 3)]  # type: ignore[union-attr]
    assert request.rejected == 2
    with pytest.raises(ValueError):
        request.add_part({"id": "r", "part": 2, "parts": 2, "entries": []})


# One publisher updates keys; a joiner subscribes at some point, the cache answers at a later one
# (having seen a prefix of the stream), and the reply is applied later still. Whatever the order,
# the joiner ends with the publisher's final state and applies no message twice.
@given(
    st.lists(st.sampled_from("abcde"), min_size=1, max_size=60),
    st.data(),
)
def test_snapshot_plus_live_equals_the_final_state_for_any_interleaving(
    updates: list[str], data: st.DataObject
):
    n = len(updates)
    subscribed = data.draw(st.integers(0, n), label="subscribed at")
    cached = data.draw(st.integers(subscribed, n), label="cache answers at")
    applied_at = data.draw(st.integers(cached, n), label="reply applied at")
    seqs: dict[str, int] = {}
    stream: list[Message] = []
    for i, name in enumerate(updates):
        seqs[name] = seqs.get(name, 0) + 1
        stream.append(Message(Key("px", name), i, Header(1, "p@h:1:a", seqs[name], 0, 0, None)))
    cache: dict[Key, Message] = {}
    for message in stream[:cached]:
        cache[message.key] = message
    state: dict[Key, int] = {}
    applied: list[int] = []

    def target(key: Key, payload: int, header: object) -> None:
        state[key] = payload
        applied.append(payload)

    merge = SnapshotMerge(target)
    for i, message in enumerate(stream[subscribed:], start=subscribed):
        if i == applied_at:
            merge.apply(list(cache.values()))
        merge.route(*message)
    if applied_at == n:
        merge.apply(list(cache.values()))
    final = {m.key: m.payload for m in stream}
    assert state == final
    assert len(applied) == len(set(applied))
