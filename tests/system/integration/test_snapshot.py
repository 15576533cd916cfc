"""Late joiners: the broker's last-value cache and the Clone pattern, through real processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

import actors
from actors.testing import BrokerProcess, eventually, wait_for_line

RATE = 5_000
KEYS = 200


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
@pytest.mark.parametrize("join_after", [0.3, 1.1])
async def test_a_late_joiner_gets_the_publishers_final_state_under_live_load(
    transport: str, join_after: float
):
    broker = BrokerProcess.launch(transport=transport, extra_args=["--lvc", "px.*"])
    feed = subprocess.Popen(  # noqa: ASYNC220 -- read by wait_for_line in a thread
        [
            sys.executable,
            "-m",
            "tests.system.integration.snapshot_feed",
            broker.frontend,
            broker.backend,
            str(RATE),
            "2.0",
            str(KEYS),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    hub = await actors.connect(broker.frontend, broker.backend, name="late")
    state: dict[str, int] = {}
    applied: list[int] = []

    def apply(key: actors.Key, payload: int, header: object) -> None:
        state[key[1]] = payload
        applied.append(payload)

    try:
        await asyncio.to_thread(wait_for_line, feed, "started", 20)
        await asyncio.sleep(join_after)  # join mid-stream: the cache holds some keys, updates keep coming
        await hub.subscribe_with_snapshot(actors.Key("px", "*"), apply)
        from_snapshot = len(state)
        out, _ = await asyncio.to_thread(feed.communicate, timeout=30)
        result = json.loads(out.strip().splitlines()[-1])
        final = result["final"]
        await eventually(lambda: state == final, 10, "the final state")
        stats = hub.statistics()
        print(
            f"{transport} join at +{join_after}s: {from_snapshot} keys from the snapshot, {len(applied)} applied, "
            f"{stats.gaps} gaps, feed sent {result['stats']['published']}"
        )
        assert from_snapshot > 0
        assert state == final
        assert len(applied) == len(set(applied)), "a message was applied twice"
        assert stats.gaps == 0
    finally:
        feed.kill()
        feed.wait()
        await hub.close()
        broker.close()


async def test_without_a_cache_a_snapshot_fails_fast_with_a_clear_error_and_optional_ones_go_live():
    broker = BrokerProcess.launch()  # no --lvc: no cache
    hub = await actors.connect(broker.frontend, broker.backend, name="late")
    pub = await actors.connect(broker.frontend, broker.backend, name="pub")
    got: list[int] = []
    try:
        with pytest.raises(actors.SnapshotError, match="no last-value cache"):
            await hub.subscribe_with_snapshot(
                actors.Key("px", "*"), lambda k, p, h: got.append(p), timeout=1.0
            )
        await eventually(lambda: not pub.has_subscribers(("px", "a")), 5, "nothing left subscribed")
        await hub.subscribe_with_snapshot(
            actors.Key("px", "*"), lambda k, p, h: got.append(p), timeout=1.0, required=False
        )
        await pub.wait_for_subscribers(("px", "a"))
        pub.publish(actors.Key("px", "a"), 7)
        await eventually(lambda: got == [7], 5, "the live message")
    finally:
        await hub.close()
        await pub.close()
        broker.close()


class _Book(actors.Actor):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.book: dict[str, int] = {}

    @actors.handler(("px", "*"), snapshot=True)
    def on_px(self, key: actors.Key, payload: int) -> None:
        self.book[key[1]] = payload


async def test_an_actor_handler_with_snapshot_starts_from_the_cached_state():
    broker = BrokerProcess.launch(extra_args=["--lvc", "*"])
    pub = await actors.connect(broker.frontend, broker.backend, name="pub")
    hub = await actors.connect(broker.frontend, broker.backend, name="book")
    book = _Book(hub, name="book")
    try:
        await pub.wait_for_subscribers(("px", "a"))  # the cache subscribes to every key
        for i in range(30):
            pub.publish(actors.Key("px", "abc"[i % 3]), i)
        while len(await hub.snapshot(("px", "*"))) < 3:  # the broker's cache has stored them
            pass
        await book.start()
        await eventually(lambda: book.book == {"a": 27, "b": 28, "c": 29}, 5, "the book from the snapshot")
    finally:
        await book.stop()
        await hub.close()
        await pub.close()
        broker.close()


async def test_a_pattern_the_cache_does_not_cover_is_refused_by_name():
    broker = BrokerProcess.launch(extra_args=["--lvc", "px.a.*"])
    hub = await actors.connect(broker.frontend, broker.backend, name="late")
    try:
        assert await hub.snapshot(("px", "a", "*")) == []
        with pytest.raises(
            actors.SnapshotError, match=r"caches \[\('px', 'a', '\*'\)\], not all of \('px', '\*'\)"
        ):
            await hub.snapshot(("px", "*"))
    finally:
        await hub.close()
        broker.close()
