"""A broker-connected hub's sending side: its streams, what it publishes, and what the bus wants.

Each key this hub publishes on is a stream: its wire key, its last sequence number, and whether
anyone on the bus subscribes to it. The XPUB sockets forward the bus's (un)subscriptions, which
:class:`actors._wanted.BusSubscriptions` bounds and decides on; a key nobody wants is numbered but
never sent (``publish_skipped``), so a subscriber that did want it sees the gap. What a hub
remembers of its streams is bounded (``_CACHE_LIMIT`` keys at hand, ``_SEQS_LIMIT`` more numbers);
past that it numbers every key afresh under a new publisher id (:meth:`HubSender._renumber`).
Heartbeats and the farewell go out here too (what they say: :mod:`actors._liveness`).

One floor of :class:`actors.RemoteHub`, on top of the reader (:mod:`actors._reading`);
:class:`~actors.RemoteHub` sets up the state annotated here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.backend

from broker import (
    FIXED,
    FORMAT_VERSION,
    KEY_END,
    MAX_PUBLISHER_ID,
    Key,
    encode_key,
    new_publisher_id,
)
from broker import encode_traced_header as _encode_traced_header
from broker import pack_payload as _pack_payload
from broker import reset_payload_packer as _reset_payload_packer
from observability import ConnectError, EnvelopeError

from ._reading import _SLICE_S, HubReader
from ._wanted import BusSubscriptions

_CACHE_LIMIT = 100_000  # keys whose frame start, numbering and "wanted" a hub keeps at hand
# numbers kept of keys evicted from that cache: past it, the hub numbers every key afresh under a
# new publisher id (_renumber), so what a publisher remembers is bounded whatever keys it is made
# to publish (a reply per asker-chosen inbox, keys taken from the bus)
_SEQS_LIMIT = 100_000
_DONTWAIT = zmq.DONTWAIT
_send = zmq.backend.Socket.send  # the Cython methods: pyzmq's Python wrapper costs ~130 ns a call
_pack_fixed = FIXED.pack
_perf = time.perf_counter
_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns


def publisher_bytes(publisher_id: str) -> bytes:
    """``publisher_id`` as a header carries it; ``ValueError`` when it does not fit its length byte."""
    raw = publisher_id.encode()
    if len(raw) > MAX_PUBLISHER_ID:  # the header's length field is one byte
        raise ValueError(
            f"hub name in {publisher_id[:40]!r}... is too long: "
            f"its publisher id must fit {MAX_PUBLISHER_ID} bytes"
        )
    return raw


class HubSender(HubReader):
    """The sending side of :class:`actors.RemoteHub` (see the module's docstring)."""

    subscription_slices = 0
    """Times reading the bus's (un)subscriptions stopped after its time slice with more waiting."""
    renumbered = 0
    """Times this hub numbered its keys afresh under a new publisher id: it had published more keys
    than it keeps numbers for (``_CACHE_LIMIT`` + ``_SEQS_LIMIT``)."""
    _renumbering = False  # saying goodbye before renumbering: its heartbeat key may be new too
    publisher_id: str
    sender_id: str
    _publisher_bytes: bytes
    _max_payload: int
    _max_key: int
    _out: dict[tuple[str, ...], list[Any]]  # key -> [wire key, seq, epoch, wanted, key+end]
    _seqs: dict[bytes, int]  # sequences of keys evicted from _out
    _wanted: BusSubscriptions
    _publish_dropped: int
    _publish_skipped: int
    _publish_dropped_by_broker: list[int]
    _malformed_upstream: int
    _heartbeat_key: Key
    _heartbeat_kb: bytes
    _prefixes_changed: asyncio.Event

    # -- heartbeats (see actors._liveness) ------------------------------------------------------
    def _send_heartbeat(self, now: float) -> None:
        own = self._heartbeat_kb
        streams = [(o[0], o[1]) for o in self._out.values() if o[0] != own]
        streams.extend(self._seqs.items())
        payload = self._watch.schedule.next_payload(now, self._published + self._publish_skipped, streams)
        published, skipped = self._published, self._publish_skipped
        try:
            self.publish(self._heartbeat_key, payload)
        except Exception as exc:  # a full queue is counted by publish; anything else is a bug here
            self._log.warning("heartbeat", "hub {}: heartbeat not sent: {}", self.name, exc)
        # control traffic: `published` and `publish_skipped` count the application's messages
        self._published, self._publish_skipped = published, skipped

    def _send_farewell(self) -> None:
        """The last heartbeat: "bye" and every key's latest seq, so subscribers log a clean departure
        at INFO and count what the tail of the stream lost. Not from a hub that sends no heartbeats
        (``idle_heartbeat=0``) or never published: nobody tracks it."""
        if self._watch.schedule.interval <= 0 or not (self._published or self._publish_skipped):
            return
        own = self._heartbeat_kb
        streams = [(o[0], o[1]) for o in self._out.values() if o[0] != own]
        streams.extend(self._seqs.items())
        published, skipped = self._published, self._publish_skipped
        try:
            self.publish(self._heartbeat_key, self._watch.schedule.farewell(streams))
        except Exception as exc:  # closing goes on whatever happens here
            self._log.warning("heartbeat", "hub {}: farewell heartbeat not sent: {}", self.name, exc)
        self._published, self._publish_skipped = published, skipped

    def publish(self, key: tuple[str, ...], message: Any, trace: list[str] | None = None) -> int:
        """Send ``message`` at ``key`` to the broker (skipped, and counted, when nobody subscribes).

        The payload is encoded either way: one that cannot be encoded (``TypeError``) or is over
        ``max_payload`` (``EnvelopeError``) raises whether or not anyone subscribes.

        ``trace`` is a sampled message's ``[traceparent, tracestate]`` (see ``observability.tracing``).
        Returns the message's sequence number on ``key``, 0 when it was skipped.
        """
        out = self._out.get(key)
        if out is None:
            out = self._new_stream(key)
        if out[2] != self._wanted.epoch:  # subscriptions changed since this key was last checked
            out[2] = self._wanted.epoch
            out[3] = self._wanted.wants(out[0])
        try:  # encoded even when nobody listens: a payload that cannot go raises now, not in production
            payload = _pack_payload(message)
        except Exception:
            _reset_payload_packer()
            raise
        if len(payload) > self._max_payload:
            raise EnvelopeError(
                f"payload of {len(payload)} bytes on {key} exceeds max_payload={self._max_payload}; "
                "send less or raise the limit on every hub and the broker"
            )
        if not out[3]:
            # Skipped, but numbered: if someone did want it (the broker was down, a subscription
            # was in flight), the next message they get shows this one as a gap. A subscriber that
            # was not subscribed starts its stream afresh (see remove_subscriber), so no false gap.
            out[1] += 1
            self._publish_skipped += 1
            return 0
        seq: int = out[1] + 1  # only after encoding: a refused payload must not look like a gap
        out[1] = seq
        if trace is None:
            frame = (
                out[4]
                + _pack_fixed(FORMAT_VERSION, 0, len(self._publisher_bytes), seq, _monotonic_ns(), _time_ns())
                + self._publisher_bytes
                + payload
            )
        else:
            header = _encode_traced_header(self._publisher_bytes, seq, _monotonic_ns(), _time_ns(), trace)
            frame = out[4] + header + payload
        if self._fanout is None:
            try:  # one frame on the Cython socket (format 2); XPUB_NODROP refuses it when the queue is full
                _send(self._pub, frame, _DONTWAIT)
            except zmq.Again:
                self._publish_dropped += 1
                self._log.warning(
                    "publish-hwm", "send queue to the broker is full: dropped a message on {}", key
                )
        else:
            self._fanout(frame, key)
        self._published += 1
        return seq

    # several brokers: _send_each; a closed hub: _publish_closed
    _fanout: Callable[[bytes, tuple[str, ...]], None] | None = None

    def _send_each(self, frame: bytes, key: tuple[str, ...]) -> None:
        """Send one frame to every broker; it is dropped (``publish_dropped``) only if none took it."""
        sent = False
        for index, pub in enumerate(self._pubs):
            try:
                _send(pub, frame, _DONTWAIT)
                sent = True
            except zmq.Again:
                self._publish_dropped_by_broker[index] += 1
                self._log.warning(
                    "publish-hwm:broker",
                    "send queue to broker {} ({}) is full: its copy of a message on {} is dropped "
                    "({} so far); the other brokers carry it",
                    index + 1,
                    self.frontends[index],
                    key,
                    self._publish_dropped_by_broker[index],
                )
        if not sent:
            self._publish_dropped += 1
            self._log.warning(
                "publish-hwm", "send queues to every broker are full: dropped a message on {}", key
            )

    def _new_stream(self, key: tuple[str, ...]) -> list[Any]:
        kb = encode_key(key)
        if len(kb) > self._max_key:  # every subscriber would drop it (Inbound): refuse it here, loudly
            raise EnvelopeError(
                f"key {tuple(key)[:3]}... is {len(kb)} bytes encoded, over max_key={self._max_key}: "
                "every subscriber would drop it; use a shorter key or raise the limit on every hub"
            )
        if len(self._out) >= _CACHE_LIMIT and not self._renumbering:
            if len(self._seqs) + len(self._out) > _SEQS_LIMIT:
                self._renumber()
            else:  # evict, keeping every key's sequence so it never restarts
                self._seqs.update((o[0], o[1]) for o in self._out.values())
                self._out.clear()
        # wire key, seq, subscription epoch, wanted, the frame's start
        out: list[Any] = [kb, self._seqs.get(kb, 0), -1, False, kb + KEY_END]
        self._out[Key.create_from(key)] = out
        return out

    def _renumber(self) -> None:
        """More keys than this hub keeps numbers for: say goodbye under the current publisher id
        (subscribers count the tails it reports and forget it, at INFO), then number every key
        afresh under a new one (to subscribers a new incarnation: its streams start anew, no gap
        and no duplicate against the old numbers). The hub's own id (its inbox) stays."""
        self._renumbering = True
        try:
            self._send_farewell()
        finally:
            self._renumbering = False
        self._out.clear()
        self._seqs.clear()
        self._watch.schedule.restart()
        self.sender_id = new_publisher_id(self.name)
        self._publisher_bytes = publisher_bytes(self.sender_id)
        self.renumbered += 1
        self._log.log(
            "INFO",
            "renumbered",
            "hub {}: published over {} keys: numbering them afresh as {} ({} times so far)",
            self.name,
            _CACHE_LIMIT + _SEQS_LIMIT,
            self.sender_id,
            self.renumbered,
        )

    def has_subscribers(self, key: tuple[str, ...] = Key("*")) -> bool:
        """True when a subscriber anywhere on the broker would receive ``key`` (``('*',)``: anything)."""
        return self._wanted.wants_key(key)

    async def wait_for_subscribers(self, key: tuple[str, ...], timeout: float = 5.0) -> None:
        """Wait until a subscription somewhere on the broker covers ``key``; ``TimeoutError`` otherwise."""
        async with asyncio.timeout(timeout):
            while not self._wanted.wants(encode_key(key)):
                self._prefixes_changed.clear()
                await self._prefixes_changed.wait()

    def _on_pub_readable(self) -> None:
        # for at most _SLICE_S, as the reader: a peer that subscribes and unsubscribes without end
        # (each change reaches every publisher) must not hold the loop; the rest waits its turn
        if self._closed:
            return
        epoch = self._wanted.epoch
        end = _perf() + _SLICE_S
        more = False
        for index, pub in enumerate(self._pubs):
            more = self._read_subscriptions(pub, index, end) or more
        if self._wanted.epoch != epoch:
            self._prefixes_changed.set()
        if more:
            self.subscription_slices += 1
            self._loop.call_soon(self._on_pub_readable)

    def _read_subscriptions(self, pub: zmq.Socket[bytes], broker: int, end: float) -> bool:
        """Take the (un)subscriptions one broker forwarded (actors._wanted decides, the socket follows:
        it is in manual mode, so only what this hub accepts reaches its table), until ``end``
        (``_perf()``); True when it stopped there with more waiting."""
        wanted = self._wanted
        while True:
            if _perf() >= end:
                return True
            try:
                msg = pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return False
            except zmq.ZMQError:
                return False
            flag, prefix = msg[:1], msg[1:]
            if flag == b"\x01":
                refused = wanted.subscribe(broker, prefix)
                if refused is None:
                    pub.setsockopt(zmq.SUBSCRIBE, prefix)  # for the pipe it came from
                else:
                    self._log.warning(
                        "subscription-refused",
                        "hub {}: refused a subscription from the bus ({}); {} refused so far",
                        self.name,
                        refused,
                        wanted.refused,
                    )
            elif flag == b"\x00":
                if wanted.unsubscribe(broker, prefix):
                    pub.setsockopt(zmq.UNSUBSCRIBE, prefix)
            else:  # a subscriber-side peer sent something that is not a (un)subscription
                self._malformed_upstream += 1
                self._log.warning(
                    "upstream",
                    "hub {}: ignored {} upstream non-subscription messages",
                    self.name,
                    self._malformed_upstream,
                )

    def _publish_closed(self, frame: bytes, key: tuple[str, ...]) -> None:
        raise ConnectError(f"hub {self.name!r} is closed: nothing more can be published on {key}")
