"""A payload that cannot be encoded raises on publish whether or not anyone subscribes."""

from __future__ import annotations

import pytest

from actors import EnvelopeError, Key


async def test_an_unencodable_or_oversize_payload_raises_with_nobody_subscribed(lonely_hub):
    hub = lonely_hub(max_payload=100)
    assert hub.publish(Key("k", "x"), {"ok": 1}) == 0  # skipped: nobody listens
    with pytest.raises(TypeError, match="cannot encode object"):
        hub.publish(Key("k", "x"), {"px": object()})
    with pytest.raises(EnvelopeError, match="max_payload"):
        hub.publish(Key("k", "x"), "x" * 200)
    assert hub.publish(Key("k", "x"), {"ok": 2}) == 0  # the packer recovered
    assert hub.statistics().publish_skipped == 2
