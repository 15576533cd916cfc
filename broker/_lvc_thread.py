"""The last-value cache's thread: its sockets, fed and asked through the broker (see ``broker._lvc``).

One loop, never blocked by one peer: it receives cached messages and snapshot requests (SUB on the
backend), learns which inboxes are subscribed (XPUB on the frontend), admits requests
(``broker._lvc_requests``), answers those whose inbox is subscribed, keeps the others waiting until
their deadline, and sends the replies in flight one part at a time with non-blocking sends.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque

import msgpack
import zmq
from loguru import logger

from observability import EnvelopeError, RateLimitedLog

from ._config import BrokerConfig
from ._envelope import decode_header, encode_header, encode_message, split_message
from ._keys import encode_key
from ._lvc import CacheStatistics, LastValueCache, parse_request
from ._lvc_requests import MAX_REQUEST_BYTES, Pending, PendingRequests, ReplyPlan, RequestGate
from ._reserved import LVC_REQUEST, instance_name, new_publisher_id, publisher_identity

_SEND_STALL = 1.0  # seconds a reply may make no progress (its queue full) before it is abandoned
_MAX_SENDING = 8  # replies in flight at once; further answerable requests queue (bounded by pending)
_PARTS_PER_TURN = 16  # parts one reply may send before the others (and new messages) get a turn
_BATCH = 10_000  # messages received per loop turn


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RequestLimits:
    """The bounds on snapshot requests (``BrokerConfig.lvc_*``; defaults as there)."""

    max_pending: int = 64
    inbox_wait: float = 1.0
    request_rate: float = 10.0
    request_burst: int = 50
    total_request_rate: float = 200.0
    max_requesters: int = 10_000
    send_hwm: int = 64


class CacheThread:
    """Runs a :class:`LastValueCache` on its own thread and sockets inside the broker's context."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        *,
        frontend: str,
        backend: str,
        cache: LastValueCache,
        publisher_id: str,
        limits: RequestLimits | None = None,
    ) -> None:
        self.cache = cache
        self.limits = limits = limits if limits is not None else RequestLimits()
        self._publisher_id = publisher_id
        self._sub = ctx.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.RCVHWM, 1_000_000)
        self._pub = ctx.socket(zmq.XPUB)  # an XPUB, to know that an inbox is subscribed before replying
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.SNDHWM, limits.send_hwm)  # parts queued; beyond: zmq.Again, no block
        self._pub.setsockopt(zmq.XPUB_NODROP, 1)
        self._request_kb = encode_key(LVC_REQUEST)
        for prefix in {*cache.prefixes(), self._request_kb}:
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix)
        self._sub.connect(backend)
        self._pub.connect(frontend)
        self._wanted: set[bytes] = set()
        self._seqs: dict[bytes, int] = {}  # per inbox: sequences are per (publisher, key)
        self._gate = RequestGate(
            rate=limits.request_rate,
            burst=limits.request_burst,
            total_rate=limits.total_request_rate,
            max_requesters=limits.max_requesters,
        )
        self._pending = PendingRequests(limits.max_pending)
        self._ready: deque[Pending] = deque()  # answerable, waiting for a sending slot
        self._sending: deque[ReplyPlan] = deque()
        self._blocked = False  # the last send found the queue full: wait for POLLOUT
        self.abandoned = 0
        self.restarts = 0  # turns that failed on a bug; the loop goes on after each
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._log = RateLimitedLog(interval=10.0)  # topics are kinds of event, never peer strings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="tickbus-broker-lvc", daemon=True)

    def start(self) -> None:
        """Start caching and answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; it closes its sockets (call before the context is terminated)."""
        self._stop.set()
        if self._thread.ident is None:  # never started: close here
            self._sub.close(linger=0)
            self._pub.close(linger=0)
            return
        self._thread.join(5.0)
        if self._thread.is_alive():
            logger.error("broker last-value cache thread did not stop; abandoning its sockets")

    def statistics(self) -> CacheStatistics:
        """The cache's counters with the request handling's (plain ints, read from any thread)."""
        return dataclasses.replace(
            self.cache.statistics(),
            pending=len(self._pending) + len(self._ready),
            expired=self._pending.expired,
            pending_full=self._pending.full,
            rate_limited=self._gate.limited,
            abandoned=self.abandoned,
            restarts=self.restarts,
            sending=len(self._sending),
            requesters=len(self._gate),
        )

    # -- the loop ---------------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._turn()
                except zmq.ContextTerminated:  # stop() gave up waiting and ended the context
                    break
                except Exception as exc:  # a bug: never a dead cache. Count, log, go on
                    self.restarts += 1
                    self._log.log(
                        "ERROR",
                        "lvc-restart",
                        "broker last-value cache: a turn failed ({}); carrying on ({} so far)",
                        type(exc).__name__,
                        self.restarts,
                        exception=exc,
                    )
                    self._stop.wait(0.1)  # a failure that repeats must not spin a core
        finally:
            self._sub.close(linger=0)
            self._pub.close(linger=0)

    def _turn(self) -> None:
        now = time.monotonic()
        timeout = 100.0
        deadline = self._pending.next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - now) * 1000 + 1.0)
        events = zmq.POLLIN
        if self._sending or self._ready:
            if self._blocked:
                events |= zmq.POLLOUT
                timeout = min(timeout, _SEND_STALL * 100)  # to notice a stalled reply in time
            else:
                timeout = 0
        poller = zmq.Poller()
        poller.register(self._sub, zmq.POLLIN)
        poller.register(self._pub, events)
        ready = dict(poller.poll(round(timeout)))
        if ready.get(self._pub, 0) & zmq.POLLIN:
            self._read_subscriptions()
        if self._sub in ready:
            self._receive()
        now = time.monotonic()
        for gone in self._pending.expire(now):
            self.cache.refused += 1
            self._log.warning(
                "lvc-inbox-unsubscribed",
                "broker last-value cache: nobody subscribed to inbox {!r:.80} within {} s; snapshot not sent",
                gone.inbox,
                self.limits.inbox_wait,
            )
        self._pump(now)

    def _receive(self) -> None:
        request, store = self._request_kb, self.cache.store
        for _ in range(_BATCH):
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 1:
                continue  # the subscribers' own hubs count malformed traffic
            try:
                kb, header, payload = split_message(frames[0])
            except EnvelopeError:
                continue  # counted by the subscribers' hubs too
            try:
                if kb == request:
                    self._request(header, payload)
                else:
                    store(kb, header, payload)
            except Exception as exc:  # one message must never end the cache: count, go on
                self.cache.malformed += 1
                self._log.log(
                    "ERROR",
                    "lvc-failure",
                    "broker last-value cache dropped a message it could not handle: {}",
                    type(exc).__name__,
                    exception=exc,
                )

    def _read_subscriptions(self) -> None:
        while True:
            try:
                msg = self._pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                inbox = msg[1:]
                self._wanted.add(inbox)
                self._ready.extend(self._pending.subscribed(inbox))
            elif msg[:1] == b"\x00":
                self._wanted.discard(msg[1:])

    # -- requests ---------------------------------------------------------------------------------
    def _request(self, header: bytes, raw: bytes) -> None:
        try:
            if len(header) + len(raw) > MAX_REQUEST_BYTES:
                raise ValueError(
                    f"snapshot request of {len(header) + len(raw)} bytes is over {MAX_REQUEST_BYTES}"
                )
            requester = publisher_identity(decode_header(header).publisher)
            rid, pattern, inbox = parse_request(msgpack.unpackb(raw, raw=False))
        except Exception as exc:
            self.cache.refused += 1
            self.cache.malformed += 1
            self._log.warning(
                "lvc-bad-request", "broker last-value cache: refused a snapshot request: {}", exc
            )
            return
        now = time.monotonic()
        inbox_kb = encode_key(inbox)
        if not self._gate.admit(requester, now):
            self.cache.refused += 1
            self._log.warning(
                "lvc-rate-limited",
                "broker last-value cache: refused snapshot requests over the rate limit "
                "({}/s per requester, {}/s in all); {} so far",
                self.limits.request_rate,
                self.limits.total_request_rate,
                self._gate.limited,
            )
            if inbox_kb in self._wanted and len(self._sending) < 2 * _MAX_SENDING:
                # tell a subscribed asker at once instead of letting it time out
                self._sending.append(
                    ReplyPlan.refusal(rid, inbox_kb, "too many snapshot requests; try again later", now)
                )
            return
        pending = Pending(rid, pattern, inbox_kb, now + self.limits.inbox_wait)
        if inbox_kb in self._wanted:
            if len(self._ready) < self.limits.max_pending:
                self._ready.append(pending)
                return
            self._pending.full += 1
        elif self._pending.add(pending):
            return
        self.cache.refused += 1
        self._log.warning(
            "lvc-pending-full",
            "broker last-value cache: refused a snapshot request: {} requests wait already",
            self.limits.max_pending,
        )

    def _start(self, request: Pending, now: float) -> ReplyPlan:
        if self.cache.covers(request.pattern):
            return self.cache.plan(request.rid, request.pattern, request.inbox, now)
        self.cache.refused += 1
        patterns = list(self.cache.patterns)
        return ReplyPlan.refusal(
            request.rid, request.inbox, f"the broker caches {patterns}, not all of {request.pattern}", now
        )

    # -- sending ----------------------------------------------------------------------------------
    def _pump(self, now: float) -> None:
        while self._ready and len(self._sending) < _MAX_SENDING:
            self._sending.append(self._start(self._ready.popleft(), now))
        self._blocked = False
        for _ in range(len(self._sending)):
            plan = self._sending[0]
            if plan.inbox not in self._wanted:  # the asker went away mid-reply
                self._abandon(plan, "lvc-inbox-gone", "its inbox was unsubscribed")
                continue
            for _ in range(_PARTS_PER_TURN):
                if plan.finished or not self._send(plan, now):
                    break
            if plan.finished:
                self._sending.popleft()
            elif self._blocked and now - plan.progress > _SEND_STALL:
                self._abandon(plan, "lvc-inbox-full", "the send queue stayed full")
            else:
                self._sending.rotate(-1)
            if self._blocked:
                return

    def _send(self, plan: ReplyPlan, now: float) -> bool:
        inbox = plan.inbox
        if len(self._seqs) > 100_000:
            self._seqs.clear()  # clients restart a stream they see from a new start without complaint
        seq = self._seqs.get(inbox, 0) + 1
        header = encode_header(self._publisher_id, seq, time.monotonic_ns(), time.time_ns())
        try:
            self._pub.send(encode_message(inbox, header, self._pack(plan.part())), zmq.DONTWAIT)
        except zmq.Again:
            self._blocked = True
            return False
        self._seqs[inbox] = seq
        plan.sent(now)
        return True

    def _abandon(self, plan: ReplyPlan, topic: str, why: str) -> None:
        self._sending.remove(plan)
        self.abandoned += 1
        self.cache.refused += 1
        self._log.warning(topic, "broker last-value cache: abandoned a snapshot reply: {}", why)


def cache_thread(
    ctx: zmq.Context[zmq.Socket[bytes]], config: BrokerConfig, *, frontend: str, backend: str
) -> CacheThread | None:
    """The cache thread ``config`` asks for (not started), or None without ``lvc_patterns``."""
    if not config.lvc_patterns:
        return None
    cache = LastValueCache(
        max_keys=config.lvc_max_keys, max_bytes=config.lvc_max_bytes, patterns=config.lvc_patterns
    )
    limits = RequestLimits(
        max_pending=config.lvc_max_pending,
        inbox_wait=config.lvc_inbox_wait,
        request_rate=config.lvc_request_rate,
        request_burst=config.lvc_request_burst,
        total_request_rate=config.lvc_total_request_rate,
        max_requesters=config.lvc_max_requesters,
        send_hwm=config.lvc_send_hwm,
    )
    return CacheThread(
        ctx,
        frontend=frontend,
        backend=backend,
        cache=cache,
        publisher_id=new_publisher_id(instance_name("lvc", config.frontend)),
        limits=limits,
    )
