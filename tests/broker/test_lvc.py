"""The last-value cache survives what a peer sends it (socket-free part)."""

from __future__ import annotations

import pytest

from broker._keys import encode_key
from broker._lvc import LastValueCache, parse_request


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "r", "pattern": ["px", "*"], "inbox": ["$lvc", "snap", "a\x00b"]},
        {"id": "r", "pattern": ["p\x00x", "*"], "inbox": ["$lvc", "snap", "h"]},
        {"id": "r", "pattern": ["px"], "inbox": ["$other", "snap", "h"]},
        {"id": 5, "pattern": ["px"], "inbox": ["$lvc", "snap", "h"]},
        [1, 2, 3],
    ],
)
def test_a_malformed_snapshot_request_is_refused_with_a_value_error(payload):
    with pytest.raises(ValueError, match="snapshot"):
        parse_request(payload)


def test_a_cached_key_that_does_not_decode_is_dropped_and_counted_not_raised():
    cache = LastValueCache(max_keys=10, max_bytes=1 << 20, patterns=[("px", "*")])
    good = encode_key(("px", "a"))
    cache.store(good, b"h", b"p")
    cache.store(b"px\x00\xff\xfe\x00", b"h", b"p")  # not UTF-8: the prefix alone decides what is cached
    assert [entry[0] for entry in cache.matching(("px", "*"))] == [good]
    assert cache.statistics().malformed == 1
    narrow = LastValueCache(max_keys=10, max_bytes=1 << 20, patterns=[("px", "*", "bid")])
    narrow.store(b"px\x00\xff\xfe\x00bid\x00", b"h", b"p")  # decoded to check the pattern: refused
    assert narrow.statistics().keys == 0 and narrow.statistics().malformed == 1


def test_the_cache_thread_carries_on_after_a_failing_turn():
    """A bug in one turn is counted and logged; the thread goes on (never a silently dead cache)."""
    import threading

    import zmq

    from broker._lvc import LastValueCache as Cache
    from broker._lvc_thread import CacheThread

    ctx = zmq.Context()
    thread = CacheThread(
        ctx,
        frontend="inproc://lvc-test-front",
        backend="inproc://lvc-test-back",
        cache=Cache(max_keys=10, max_bytes=10_000, patterns=[("*",)]),
        publisher_id="lvc@h:1:t",
    )
    turns = threading.Semaphore(0)
    real_turn = thread._turn
    failures = iter([RuntimeError("a bug"), RuntimeError("another")])

    def flaky_turn() -> None:
        turns.release()
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_turn()

    thread._turn = flaky_turn  # type: ignore[method-assign]
    thread.start()
    try:
        for _ in range(4):  # two failing turns and two good ones after them
            assert turns.acquire(timeout=10), "the cache thread stopped turning"
        assert thread.statistics().restarts == 2
    finally:
        thread.stop()
        ctx.term()
