"""A publisher made to publish more keys than it keeps numbers for (issue 11's bounded memory).

What a hub remembers per key it published (the frame start, the sequence) is bounded: past
``_CACHE_LIMIT`` + ``_SEQS_LIMIT`` keys it says goodbye under its publisher id and numbers every
key afresh under a new one. A subscriber must then lose nothing and count nothing false: no gap,
no duplicate, every message delivered, a key published before and after still delivered.
The limits are lowered here (the defaults are 100,000 each).
"""

from __future__ import annotations

import pytest

import actors
import actors._sending as sending
from actors.testing import BrokerProcess, eventually


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sending, "_CACHE_LIMIT", 50)
    monkeypatch.setattr(sending, "_SEQS_LIMIT", 50)


async def test_a_publisher_past_its_key_limits_renumbers_and_subscribers_lose_nothing(
    small_limits: None, tickbus_broker: BrokerProcess
) -> None:
    sub_hub = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="sub")
    pub_hub = await actors.connect(
        tickbus_broker.frontend, tickbus_broker.backend, name="pub", idle_heartbeat=0.2
    )
    got: list[tuple[str, int]] = []
    try:
        actors.Subscriber(sub_hub, "s").add_sync_listener(
            actors.Key("k", "*"), lambda key, payload: got.append((key[1], payload))
        )
        await sub_hub.sync()
        await pub_hub.wait_for_subscribers(("k", "x"))
        sent: list[tuple[str, int]] = []
        for i in range(400):  # "hot" again and again, 399 others once each
            for name in ("hot", f"key{i}"):
                pub_hub.publish(actors.Key("k", name), i)
                sent.append((name, i))
        await eventually(
            lambda: len(got) == len(sent), 10, f"every message delivered: {len(got)}/{len(sent)}"
        )
        stats = sub_hub.statistics()
        print(
            f"\nmany keys: {len(sent)} messages on 401 keys; publisher renumbered {pub_hub.renumbered} times; "
            f"subscriber: gaps {stats.gaps}, duplicates {stats.duplicates}, incarnations {stats.incarnations}"
        )
        assert got == sent
        assert pub_hub.renumbered >= 3 and pub_hub.statistics().renumbered == pub_hub.renumbered
        assert pub_hub.sender_id != pub_hub.publisher_id
        assert len(pub_hub._out) <= 51 and len(pub_hub._seqs) <= 50
        assert stats.gaps == stats.duplicates == stats.reordered == 0
        assert stats.incarnations == pub_hub.renumbered
        # each old id said goodbye: none is reported gone once its heartbeats stop (3 x 0.2 s)
        beats = stats.heartbeats
        await eventually(lambda: sub_hub.statistics().heartbeats >= beats + 6, 10, "1.2 s of heartbeats")
        stats = sub_hub.statistics()
        assert stats.publishers_gone == 0 and stats.publishers_live == 2  # the new pub id, and sub's own
    finally:
        await pub_hub.close()
        await sub_hub.close()
