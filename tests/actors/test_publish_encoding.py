"""A payload that cannot be encoded raises on publish whether or not anyone subscribes."""

from __future__ import annotations

import pytest

from actors import EnvelopeError, Key
from actors._remote import RemoteHub


async def test_an_unencodable_or_oversize_payload_raises_with_nobody_subscribed():
    hub = RemoteHub(  # connected to no broker: nobody subscribes, every publish is skipped
        "tcp://127.0.0.1:1",
        "tcp://127.0.0.1:2",
        name="lonely",
        hwm=10,
        heartbeat_ivl=1.0,
        heartbeat_timeout=3.0,
        max_payload=100,
        linger=0.0,
        context=None,
    )
    try:
        assert hub.publish(Key("k", "x"), {"ok": 1}) == 0  # skipped: nobody listens
        with pytest.raises(TypeError, match="cannot encode object"):
            hub.publish(Key("k", "x"), {"px": object()})
        with pytest.raises(EnvelopeError, match="max_payload"):
            hub.publish(Key("k", "x"), "x" * 200)
        assert hub.publish(Key("k", "x"), {"ok": 2}) == 0  # the packer recovered
        assert hub.statistics().publish_skipped == 2
    finally:
        await hub.close()
