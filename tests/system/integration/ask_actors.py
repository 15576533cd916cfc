"""Actors used by the request/reply integration tests (``tests/system/integration/test_ask.py``) through ``tickbus run``."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from actors import Actor, AskError, Key, answers, handler


class Pricer(Actor):
    """Answers ``('svc', 'price')`` (fails on a negative quantity), ``('svc', 'slow')`` after the asked
    number of seconds, and ``('svc', 'unsendable')`` with a value the payload codec refuses."""

    name = "pricer"

    @answers(("svc", "price"))
    def price(self, key: Key, order: dict[str, Any]) -> dict[str, Any]:
        if order["qty"] < 0:
            raise ValueError(f"negative quantity {order['qty']}")
        return {"px": order["qty"] * 1.5, "n": order["n"], "pid": os.getpid()}

    @answers(("svc", "slow"))
    async def slow(self, key: Key, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @answers(("svc", "unsendable"))
    def unsendable(self, key: Key, payload: Any) -> object:
        return {1, 2, 3}  # a set: not encodable


class Quoter(Actor):
    """On ``('quote', 'request', n)`` asks the pricer and publishes the answer (or the error's class)
    at ``('quote', 'answer', n)``: an actor asking another actor in another process."""

    name = "quoter"

    @handler(("quote", "request", "*"))
    async def on_request(self, key: Key, qty: int) -> None:
        try:
            answer: Any = await self.ask(("svc", "price"), {"qty": qty, "n": int(key[2])}, timeout=2)
        except AskError as exc:
            answer = type(exc).__name__
        self.publish(("quote", "answer", key[2]), answer)
