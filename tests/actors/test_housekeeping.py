"""A hub's housekeeping sweeps every 20 ms while it sends or receives, less often once idle."""

from __future__ import annotations

import asyncio

import pytest

from actors import Key
from actors._remote import RemoteHub


def _next_sweep_in(hub: RemoteHub) -> float:
    hub._housekeeping.cancel()
    hub._sweep()
    return hub._housekeeping.when() - asyncio.get_running_loop().time()


@pytest.mark.parametrize(("idle_heartbeat", "idle"), [(1.0, 0.1), (0.2, 0.05), (0.02, 0.02), (0.0, 0.1)])
async def test_the_sweep_slows_down_when_idle_and_not_past_a_quarter_heartbeat(
    lonely_hub, idle_heartbeat, idle
):
    hub = lonely_hub(idle_heartbeat=idle_heartbeat)
    _next_sweep_in(hub)  # takes the hub's activity so far
    assert _next_sweep_in(hub) == pytest.approx(idle, abs=0.005)
    hub.publish(Key("px", "a"), {"n": 1})  # skipped (nobody subscribes), still activity
    assert _next_sweep_in(hub) == pytest.approx(0.02, abs=0.005)
    assert _next_sweep_in(hub) == pytest.approx(idle, abs=0.005)
