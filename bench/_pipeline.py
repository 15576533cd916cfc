"""The 3-hop pipeline row: feed -> model -> strategy, three processes, every hop through the server.

- **feed**: the system's ordinary benchmark publisher (``Driver.publisher``), paced by the harness at
  5,000 ticks/s (``--pipeline-rate``) on ``quote.AAPL``.
- **model** (:func:`model`, its own process): receives every tick, derives a signal from it
  (:func:`derive`: mid, edge, side) and publishes it on ``signal.AAPL`` with the tick's sequence
  ``s`` and send time ``t`` in the signal's payload.
- **strategy** (:func:`strategy`, its own process): receives the signals and hands ``(s, t, m)`` to
  the harness's recorder, which records tick sent -> signal handled (same host, same clock), and
  the two hops apart: ``m`` is when the model's code got the tick (its handler's or callback's
  first line), so ``m - t`` is feed -> model and ``handled - m`` is model -> strategy.

Per system:

- ``actors`` / ``actors+obs``: the model is an ``actors.Actor`` (prefix ``signal``) with one sync
  ``@handler(("quote", "*"))`` that calls ``self.publish``; the strategy an actor with a sync
  ``@handler(("signal", "*"))``. Both keep the product's default mailbox bound. ``actors+obs``
  turns observability on in all three processes (see :mod:`bench._tickbus_actors`); ``actors+pair``
  connects all three to a broker pair (see :mod:`bench._tickbus_pair`).
- ``tickbus``: the aiopubsub API, a sync listener that publishes with ``actors.Publisher``.
- ``nats``: one connection per process; the model's ``subscribe("quote.>", cb=...)`` callback
  ``await``s ``publish("signal.AAPL", ...)``.
- ``raw-zmq``: the model is the raw-zmq benchmark subscriber (SUB through the proxy, whatever frame
  layout :mod:`bench._rawzmq` uses) plus a PUB socket connected to the same proxy; signals are one
  frame each, ``b"signal\\x00AAPL\\x00" 0xff len(header) header payload``.

NATS and raw-zmq signals are ``header + payload`` shaped like tickbus's (msgpack), the payload the
same dict as tickbus's signal. Their models decode the tick's header and payload with the harness's
decoder (as their benchmark subscribers do) and derive the signal from the benchmark quote, which
is what every tick carries. Redis and the CURVE variants are not part of this row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import zmq

from ._systems import Config, SubClient
from ._wire import quote

OnSignal = Callable[[int, int, int], None]
"""A strategy's callback: the tick's sequence, its send time, and when the model got it (ns)."""

PIPELINE_SYSTEMS = ("tickbus", "actors", "actors+obs", "actors+pair", "nats", "raw-zmq")
SIGNAL_KEY = b"signal\x00AAPL\x00"
SIGNAL_PREFIX = b"signal\x00"
SIGNAL_SUBJECT = "signal.AAPL"
MODEL = "bench-model-0000"  # the model's publisher id in its signal header (NATS, raw-zmq)
_HWM = 100_000
_DRAIN_BUDGET = 2_000

_pack = msgpack.Packer(use_bin_type=True).pack


def derive(tick: Mapping[str, Any]) -> dict[str, Any]:
    """The model's work: a signal from a quote (mid, edge to the mid, side, size)."""
    mid = (tick["bid"] + tick["ask"]) / 2
    edge = tick["px"] - mid
    return {
        "sym": "AAPL",
        "mid": mid,
        "edge": edge,
        "side": "buy" if edge < 0 else "sell",
        "qty": tick["qty"],
    }


def unavailable(system: str) -> str | None:
    """Why ``system`` has no 3-hop row, or None."""
    if system in PIPELINE_SYSTEMS:
        return None
    return f"not part of the 3-hop row (it runs for {', '.join(PIPELINE_SYSTEMS)})"


async def model(system: str, config: Config) -> SubClient:
    """Connect and start ``system``'s model (in a client process)."""
    if system == "tickbus":
        return await _tickbus_model(config)
    if system in ("actors", "actors+obs", "actors+pair"):
        return await _actor_model(config, observed=system == "actors+obs")
    if system == "nats":
        return await _nats_model(config)
    if system == "raw-zmq":
        return await _rawzmq_model(config)
    raise ValueError(unavailable(system))


async def strategy(system: str, config: Config, on_message: OnSignal) -> SubClient:
    """Connect and start ``system``'s strategy, which calls ``on_message(s, t, m)`` per signal."""
    if system == "tickbus":
        return await _tickbus_strategy(config, on_message)
    if system in ("actors", "actors+obs", "actors+pair"):
        return await _actor_strategy(config, on_message, observed=system == "actors+obs")
    if system == "nats":
        return await _nats_strategy(config, on_message)
    if system == "raw-zmq":
        return await _rawzmq_strategy(config, on_message)
    raise ValueError(unavailable(system))


class _Signals:
    """Signals as NATS and raw-zmq carry them: a tickbus-shaped header, then the signal payload."""

    def __init__(self) -> None:
        self._seq = 0
        self._quote = quote()

    def encode(self, seq: int, sent_ns: int, via_ns: int) -> tuple[bytes, bytes]:
        self._seq += 1
        head = _pack((1, MODEL, self._seq, time.monotonic_ns(), time.time_ns(), None))
        return head, _pack({**derive(self._quote), "s": seq, "t": sent_ns, "m": via_ns})


def _decode_signal(head: bytes, payload: bytes) -> tuple[int, int, int]:
    msgpack.unpackb(head)  # decoded, as a real strategy would check it
    fields = msgpack.unpackb(payload)
    return fields["s"], fields["t"], fields["m"]


# -- tickbus (aiopubsub API) ---------------------------------------------------------------------
async def _tickbus_model(config: Config) -> SubClient:
    import actors

    from ._tickbus import _connect, _Sub

    hub = await _connect(config, "bench-model")
    publish = actors.Publisher(hub, ("signal",)).publish

    def on_tick(key: Any, tick: Any) -> None:
        via = time.monotonic_ns()
        publish(("AAPL",), {**derive(tick), "s": tick["s"], "t": tick["t"], "m": via})

    actors.Subscriber(hub, "model").add_sync_listener(actors.Key("quote", "*"), on_tick)
    return _Sub(hub)


async def _tickbus_strategy(config: Config, on_message: OnSignal) -> SubClient:
    import actors

    from ._tickbus import _connect, _Sub

    hub = await _connect(config, "bench-strategy")

    def on_signal(key: Any, signal: Any) -> None:
        on_message(signal["s"], signal["t"], signal["m"])

    actors.Subscriber(hub, "strategy").add_sync_listener(actors.Key("signal", "*"), on_signal)
    return _Sub(hub)


# -- actors (Actor API) --------------------------------------------------------------------------
async def _actor_model(config: Config, *, observed: bool) -> SubClient:
    import actors

    from ._tickbus import _connect
    from ._tickbus_actors import _Client, _observe

    class Model(actors.Actor):
        name = "bench-model"
        prefix = ("signal",)

        @actors.handler(("quote", "*"))
        def on_tick(self, key: Any, tick: Any) -> None:
            via = time.monotonic_ns()
            self.publish(("AAPL",), {**derive(tick), "s": tick["s"], "t": tick["t"], "m": via})

    hub = await _connect(config, "bench-model")
    actor = Model(hub)
    tmp = _observe(hub, "bench-model", actor, observed)
    await actor.start()
    return _Client(hub, actor, tmp)


async def _actor_strategy(config: Config, on_message: OnSignal, *, observed: bool) -> SubClient:
    import actors

    from ._tickbus import _connect
    from ._tickbus_actors import _Client, _observe

    class Strategy(actors.Actor):
        name = "bench-strategy"

        @actors.handler(("signal", "*"))
        def on_signal(self, key: Any, signal: Any) -> None:
            on_message(signal["s"], signal["t"], signal["m"])

    hub = await _connect(config, "bench-strategy")
    actor = Strategy(hub)
    tmp = _observe(hub, "bench-strategy", actor, observed)
    await actor.start()
    return _Client(hub, actor, tmp)


# -- nats -------------------------------------------------------------------------------------------
async def _nats_model(config: Config) -> SubClient:
    from ._nats import _connect, _Counters, _Sub
    from ._wire import NATS_WILDCARD, BodyDecoder

    counters = _Counters()
    nc = await _connect(config, counters)
    decode, signals = BodyDecoder(), _Signals()

    async def on_tick(msg: Any) -> None:
        via = time.monotonic_ns()
        head, payload = signals.encode(*decode(msg.data), via)
        await nc.publish(SIGNAL_SUBJECT, head + payload)

    await nc.subscribe(NATS_WILDCARD, cb=on_tick)
    await nc.flush(timeout=10)
    return _Sub(nc, counters)


async def _nats_strategy(config: Config, on_message: OnSignal) -> SubClient:
    from ._nats import _connect, _Counters, _Sub

    counters = _Counters()
    nc = await _connect(config, counters)
    unpacker = msgpack.Unpacker(raw=False)

    async def on_signal(msg: Any) -> None:
        unpacker.feed(msg.data)
        unpacker.unpack()  # the header
        fields = unpacker.unpack()
        on_message(fields["s"], fields["t"], fields["m"])

    await nc.subscribe("signal.>", cb=on_signal)
    await nc.flush(timeout=10)
    return _Sub(nc, counters)


# -- raw-zmq ----------------------------------------------------------------------------------------
class _RawModel:
    """The raw-zmq benchmark subscriber (ticks in) and a PUB socket (signals out)."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], pub: zmq.Socket[bytes]) -> None:
        self._ctx, self._pub = ctx, pub
        self._signals = _Signals()
        self.sub: SubClient | None = None

    def on_tick(self, seq: int, sent_ns: int) -> None:
        head, payload = self._signals.encode(seq, sent_ns, time.monotonic_ns())
        self._pub.send(SIGNAL_KEY + b"\xff" + bytes((len(head),)) + head + payload)

    def stats(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        if self.sub is not None:
            await self.sub.close()
        self._pub.close(linger=1000)
        self._ctx.term()


class _RawStrategy:
    """SUB to the signals through the proxy, read like the raw-zmq benchmark subscriber reads."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], sock: zmq.Socket[bytes], on_message: OnSignal):
        self._ctx, self._sock, self._on_message = ctx, sock, on_message
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.FD, self._drain)

    def _drain(self) -> None:
        sock, on_message = self._sock, self._on_message
        budget = _DRAIN_BUDGET
        while True:
            try:
                data = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            start = data.find(b"\xff") + 2
            end = start + data[start - 1]
            on_message(*_decode_signal(data[start:end], data[end:]))
            budget -= 1
            if not budget:
                self._loop.call_soon(self._drain)
                return

    def stats(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        self._loop.remove_reader(self._sock.FD)
        self._sock.close(linger=0)
        self._ctx.term()


async def _rawzmq_model(config: Config) -> SubClient:
    from ._rawzmq import DRIVER

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, _HWM)
    pub.connect(config["frontend"])
    model = _RawModel(ctx, pub)
    model.sub = await DRIVER.subscriber(config, model.on_tick)
    return model


async def _rawzmq_strategy(config: Config, on_message: OnSignal) -> SubClient:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, _HWM)
    sock.setsockopt(zmq.SUBSCRIBE, SIGNAL_PREFIX)
    sock.connect(config["backend"])
    return _RawStrategy(ctx, sock, on_message)
