"""Bounded mailboxes: overflow drops are counted and never block."""

from __future__ import annotations

import asyncio

import pytest

from actors import Mailbox


def test_full_mailbox_drops_the_oldest_by_default_and_counts_it():
    box: Mailbox[int] = Mailbox(3)
    assert [box.put(i) for i in range(5)] == [True, True, True, False, False]
    assert [box.get_nowait() for _ in range(3)] == [2, 3, 4]
    assert box.dropped == 2


def test_drop_newest_keeps_what_was_queued():
    box: Mailbox[int] = Mailbox(2, "drop_newest")
    for i in range(4):
        box.put(i)
    assert [box.get_nowait(), box.get_nowait()] == [0, 1]
    assert box.dropped == 2


def test_unknown_overflow_policy_is_refused():
    with pytest.raises(ValueError, match="drop_oldest"):
        Mailbox(2, "block")  # type: ignore[arg-type]


async def test_get_waits_for_a_put_and_survives_cancellation():
    box: Mailbox[str] = Mailbox(2)
    waiter = asyncio.create_task(box.get())
    cancelled = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    box.put("x")
    assert await asyncio.wait_for(waiter, 1) == "x"
    with pytest.raises(asyncio.CancelledError):
        await cancelled
