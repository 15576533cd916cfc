"""The checked forwarder's decisions: one message, one subscription at a time. Socket-free.

Problem: with per-identity permissions (``broker._permissions``) the broker must decide, for every
message a publisher sends, whether its identity may publish that key under that publisher id, and
for every subscription a subscriber sends, whether it may and whether it fits the limits; and it must
keep the distinct subscribed prefixes so that the publishers upstream hear each one once.

Approach: :class:`Gate` answers :meth:`Gate.publish` (a drop kind, or None to forward) and
:meth:`Gate.subscribe` / :meth:`Gate.unsubscribe` (apply locally? forward upstream?). Per message it
costs a header decode and a few dict lookups: the verdicts on (identity, key frame) and (identity,
publisher id) are cached in bounded dicts, cleared when full. Asks and snapshot requests (rare) have
their payloads decoded: an ask is remembered (:class:`AskTable`) so a reply to its inbox is accepted
only from an identity whose ``answers`` cover the asked key, once. Drops are counted per identity and
kind in plain ints; a log line per kind of drop at most every 5 s (never keyed by a peer's string).

Subscriptions: libzmq's XPUB in manual mode hands over every (un)subscription with its connection's
metadata (``User-Id``, the identity from ZAP) and applies only what we apply; when a connection
closes it reports an unsubscribe for each prefix that connection had *asked* for, with no metadata,
so such an unsubscribe cannot be tied to an identity. The table here counts holders per prefix and
identity and attributes an anonymous unsubscribe only when that is unambiguous (one holder, no
refused requester of the prefix pending); otherwise it keeps the count, so a prefix may stay
subscribed upstream after its last holder left (the publishers send it, the XPUB drops it) but is
never unsubscribed while someone holds it. Limits count *distinct prefixes per identity* (not per
connection: Python cannot tell the connections of one identity apart) and in total.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from observability import RateLimitedLog

from ._envelope import MAX_PUBLISHER_ID, DecodeLimits, decode_header, decode_payload
from ._keys import decode_key, subscription_prefix
from ._lvc import parse_request as parse_snapshot_request
from ._permissions import Permissions, Rules, plumbing_kind
from ._reserved import parse_publisher_id

KINDS = (
    "malformed",  # not one frame, or a key or header that does not decode
    "publisher",  # a header under a publisher id that is not the identity's own
    "publish",  # a key outside its publish patterns
    "reserved",  # a reserved key it may not publish ($broker, $lvc snapshots, others' plumbing)
    "ask",  # an ask it may not send, or with a reply inbox not its own
    "reply",  # a reply to no pending ask, or to an ask it may not answer
    "snapshot",  # a snapshot request for keys it may not subscribe, or to an inbox not its own
    "subscribe",  # a subscription it may not make
    "subscription_limit",  # a subscription over the per-identity or total limit
    "upstream",  # a message (not a subscription) sent by a subscriber
)
UNKNOWN = "<unknown>"  # drops from a User-Id with no identity behind it
_CACHE = 65_536
_KEY_CACHE_BYTES = 512  # key frames longer than this are checked but not cached
_MAX_REQUEST = 64 * 1024  # bytes of an ask or snapshot request payload the broker decodes
_REQUEST_LIMITS = DecodeLimits(max_bytes=_MAX_REQUEST)
_MAX_REPLY = 16 * 1024 * 1024
_REPLY_LIMITS = DecodeLimits(max_bytes=_MAX_REPLY)
_MAX_ASKED = 64  # segments of an asked key (real ones have three); the asks table holds each until its
# deadline, so an entry is bounded by these, not by the 2 MiB a frame may have
_SUB, _UNSUB = 1, 0
Payload = bytes | memoryview
_ANONYMOUS = ""  # the broker's own inproc sockets (stats, last-value cache): no ZAP, no User-Id


class AskTable:
    """Asks in flight, ``(inbox, id) -> asked key``, bounded; the oldest go first when full."""

    def __init__(self, max_asks: int, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._asks: OrderedDict[tuple[str, int], tuple[tuple[str, ...], int]] = OrderedDict()
        self._max = max_asks
        self._now_ns = now_ns
        self.evicted = 0

    def add(self, inbox: str, ask_id: int, key: tuple[str, ...], deadline_ns: int) -> None:
        """Remember an ask until its deadline (and at most ``max_asks`` of them)."""
        asks = self._asks
        now = self._now_ns()
        while asks and next(iter(asks.values()))[1] < now:  # roughly in deadline order
            asks.popitem(last=False)
        asks[(inbox, ask_id)] = (key, deadline_ns)
        asks.move_to_end((inbox, ask_id))
        while len(asks) > self._max:
            asks.popitem(last=False)
            self.evicted += 1

    def peek(self, inbox: str, ask_id: int) -> tuple[str, ...] | None:
        """The asked key of a pending ask, if any."""
        entry = self._asks.get((inbox, ask_id))
        return entry[0] if entry is not None else None

    def take(self, inbox: str, ask_id: int) -> tuple[str, ...] | None:
        """The asked key of a pending ask, forgotten now (a reply is accepted once)."""
        entry = self._asks.pop((inbox, ask_id), None)
        return entry[0] if entry is not None else None

    def __len__(self) -> int:
        return len(self._asks)


class Gate:
    """Every check of the checked forwarder, with its counters (see the module docstring)."""

    def __init__(
        self,
        permissions: Permissions,
        *,
        max_per_identity: int,
        max_total: int,
        max_asks: int = 65_536,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.permissions = permissions
        self.max_per_identity, self.max_total = max_per_identity, max_total
        self.asks = AskTable(max_asks, now_ns)
        self.denied: dict[str, dict[str, int]] = {}
        self._keys: dict[tuple[str, bytes], str | None] = {}  # (identity, key frame) -> verdict
        self._publishers: dict[tuple[str, str], bool] = {}  # (identity, publisher id) -> own
        self._holders: dict[bytes, dict[str, int]] = {}  # prefix -> identity -> applied requests
        self._held: dict[str, int] = {}  # identity -> distinct prefixes it holds
        self._refused: dict[bytes, int] = {}  # prefix -> refused requests not yet withdrawn
        self._refused_full = False
        self._log = RateLimitedLog(interval=5.0, broker_role="checked")

    def set_permissions(self, permissions: Permissions) -> None:
        """Check with ``permissions`` from now on (a reloaded file); cached verdicts are dropped.

        Subscriptions applied under the old rules stay until their connection unsubscribes or closes.
        """
        self.permissions = permissions
        self._keys.clear()
        self._publishers.clear()

    # -- counters -----------------------------------------------------------------------------
    def deny(self, identity: str, kind: str, detail: object = "") -> str:
        """Count a drop of ``kind`` for ``identity`` (and log it, at most once per 5 s per kind)."""
        counts = self.denied.get(identity)
        if counts is None:
            counts = self.denied[identity] = {}
        counts[kind] = counts.get(kind, 0) + 1
        self._log.warning(kind, "broker dropped from identity {!r}: {} {!r:.120}", identity, kind, detail)
        return kind

    def statistics(self) -> dict[str, dict[str, int]]:
        """A copy of the drop counters, identity -> kind -> count; safe from another thread (each
        ``dict()`` copy runs under the GIL in one step, while iterating the live dict would not)."""
        outer = dict(self.denied)
        return {identity: dict(counts) for identity, counts in outer.items()}

    @property
    def subscriptions(self) -> int:
        """Distinct prefixes applied now (a stale one may linger, see the module docstring)."""
        return len(self._holders)

    # -- publishing ---------------------------------------------------------------------------
    def publish(
        self, identity: str, key_frame: bytes, header: bytes | memoryview, payload: Payload, frames: int = 1
    ) -> str | None:
        """None to forward a message from ``identity`` (its one frame split into key, header and
        payload: ``broker.split_message``; ``frames`` other than 1 is refused), else the drop kind
        (counted)."""
        rules = self.permissions.rules(identity)
        if rules is None:
            return self.deny(identity, "publish", "no [identities] table for this key")
        try:
            if frames != 1:  # a second frame would pass the subscribers' prefix filters unchecked
                raise ValueError(frames)
            publisher = decode_header(header).publisher
        except Exception:  # EnvelopeError; anything else from a hostile header is the same to us
            return self.deny(identity, "malformed", bytes(header[:40]))
        own = self._publishers.get((identity, publisher))
        if own is None:
            own = rules.owns(publisher)
            if len(self._publishers) >= _CACHE:
                self._publishers.clear()
            self._publishers[(identity, publisher)] = own
        if not own:
            return self.deny(identity, "publisher", publisher)
        verdict = self._keys.get((identity, key_frame), "")
        if verdict == "":
            verdict = self._key_verdict(rules, key_frame)
            if verdict != "check" and len(key_frame) <= _KEY_CACHE_BYTES:
                if len(self._keys) >= _CACHE:
                    self._keys.clear()
                self._keys[(identity, key_frame)] = verdict
        if verdict == "check":  # rare keys whose payload or header decide: asks, replies, plumbing
            verdict = self._plumbing(rules, key_frame, publisher, payload)
        return None if verdict is None else self.deny(identity, verdict, key_frame[:80])

    def _key_verdict(self, rules: Rules, key_frame: bytes) -> str | None:
        try:
            key = decode_key(key_frame)
        except Exception:  # InvalidKeyError
            return "malformed"
        kind = plumbing_kind(key)
        if kind is None:
            if rules.may_publish(key):
                return None
            return "reserved" if key and key[0].startswith("$") else "publish"
        return "reserved" if kind == "broker" else "check"

    def _plumbing(self, rules: Rules, key_frame: bytes, publisher: str, payload: Payload) -> str | None:
        key = decode_key(key_frame)  # decoded once already: cannot fail
        kind = plumbing_kind(key)
        if kind == "heartbeat":
            parsed = parse_publisher_id(publisher)
            return None if parsed is not None and key[2] == parsed.name else "reserved"
        if kind == "sync":
            return None if rules.owns(key[1]) else "reserved"
        if kind == "ask":
            return self._ask(rules, key[1:], _request(payload))
        if kind == "reply":
            return self._reply(rules, key[1], _request(payload, _REPLY_LIMITS))
        if kind == "snapshot":
            return _snapshot(rules, _request(payload))
        return "reserved"

    def _ask(self, rules: Rules, asked: tuple[str, ...], request: dict[Any, Any]) -> str | None:
        inbox, ask_id, deadline = request.get("reply_to"), request.get("id"), request.get("deadline")
        if not (rules.may_ask(asked) and isinstance(inbox, str) and rules.owns(inbox)):
            return "ask"
        if type(ask_id) is not int or type(deadline) is not int:
            return "ask"
        if (
            len(inbox) > MAX_PUBLISHER_ID
            or len(asked) > _MAX_ASKED
            or sum(map(len, asked)) > _KEY_CACHE_BYTES
        ):
            return "ask"  # held until its deadline: bounded by these, never by the frame
        self.asks.add(inbox, ask_id, asked, deadline)
        return None

    def _reply(self, rules: Rules, inbox: str, reply: dict[Any, Any]) -> str | None:
        ask_id = reply.get("id")
        asked = self.asks.peek(inbox, ask_id) if type(ask_id) is int else None
        if asked is None or not rules.may_answer(asked):
            return "reply"  # and the ask stays pending for the identity that may answer it
        self.asks.take(inbox, ask_id)  # type: ignore[arg-type]  # an int: peek found it
        return None

    # -- subscriptions ------------------------------------------------------------------------
    def subscription(self, identity: str | None, frame: bytes) -> tuple[bool, bytes | None]:
        """A frame a subscriber sent, from ``identity`` (None: no metadata, i.e. the broker's own
        inproc socket or libzmq reporting a closed connection's subscription).

        Returns ``(apply, upstream)``: whether to apply the frame to the XPUB (its last pipe), and the
        frame to send upstream to the publishers, if any.
        """
        if not frame or frame[0] not in (_SUB, _UNSUB):
            self.deny(identity or _ANONYMOUS or UNKNOWN, "upstream", frame[:40])
            return False, None
        prefix = frame[1:]
        if frame[0] == _SUB:
            return self._subscribe(identity if identity is not None else _ANONYMOUS, prefix)
        if identity is None:
            return True, self._anonymous_unsubscribe(prefix)
        holders = self._holders.get(prefix)
        if (holders is None or identity not in holders) and self._refused.get(prefix):
            self._anonymous_unsubscribe(prefix)  # a refused request withdrawn
            return True, None
        return True, self._release(identity, prefix)

    def _subscribe(self, identity: str, prefix: bytes) -> tuple[bool, bytes | None]:
        holders = self._holders.get(prefix)
        if identity:
            rules = self.permissions.rules(identity)
            if rules is None or not rules.may_subscribe(prefix):
                self._refuse(prefix)
                self.deny(identity, "subscribe", prefix[:80])
                return False, None
            new_for_identity = holders is None or identity not in holders
            if new_for_identity and self._held.get(identity, 0) >= self.max_per_identity:
                self._refuse(prefix)
                self.deny(identity, "subscription_limit", f"{self.max_per_identity} per identity")
                return False, None
            if holders is None and len(self._holders) >= self.max_total:
                self._refuse(prefix)
                self.deny(identity, "subscription_limit", f"{self.max_total} in total")
                return False, None
        if holders is None:
            holders = self._holders[prefix] = {}
        if identity not in holders:
            self._held[identity] = self._held.get(identity, 0) + 1
        holders[identity] = holders.get(identity, 0) + 1
        return True, b"\x01" + prefix if len(holders) == 1 and holders[identity] == 1 else None

    def _refuse(self, prefix: bytes) -> None:
        # remembered so that the anonymous unsubscribe libzmq reports when that connection closes is
        # not taken from a holder; bounded: when full, anonymous unsubscribes release nothing
        if prefix in self._refused or len(self._refused) < _CACHE:
            self._refused[prefix] = self._refused.get(prefix, 0) + 1
        elif not self._refused_full:
            self._refused_full = True
            self._log.warning("refused-full", "broker: too many refused subscriptions to track exactly")

    def _anonymous_unsubscribe(self, prefix: bytes) -> bytes | None:
        refused = self._refused.get(prefix, 0)
        if refused:
            if refused == 1:
                del self._refused[prefix]
            else:
                self._refused[prefix] = refused - 1
            return None
        holders = self._holders.get(prefix)
        if holders is None or len(holders) != 1 or self._refused_full:
            return None  # nobody, or ambiguous: keep it (see the module docstring)
        return self._release(next(iter(holders)), prefix)

    def _release(self, identity: str, prefix: bytes) -> bytes | None:
        holders = self._holders.get(prefix)
        if holders is None or identity not in holders:
            return None
        left = holders[identity] - 1
        if left:
            holders[identity] = left
            return None
        del holders[identity]
        self._held[identity] -= 1
        if holders:
            return None
        del self._holders[prefix]
        return b"\x00" + prefix


def _snapshot(rules: Rules, request: dict[Any, Any]) -> str | None:
    try:
        _, pattern, inbox = parse_snapshot_request(request)
    except ValueError:
        return "snapshot"
    ok = len(inbox) == 3 and rules.owns(inbox[2])
    return None if ok and rules.may_subscribe(subscription_prefix(pattern)) else "snapshot"


def _request(payload: Payload, limits: DecodeLimits = _REQUEST_LIMITS) -> dict[Any, Any]:
    """A request or reply payload as a map; empty when it is not one (the caller then refuses)."""
    try:
        value = decode_payload(payload, limits)
    except Exception:  # EnvelopeError
        return {}
    return value if isinstance(value, dict) else {}
