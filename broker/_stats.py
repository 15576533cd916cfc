"""Broker statistics, computed off the fast path and without sockets.

Problem: the broker forwards in libzmq's proxy, so Python never sees a message. Approach: side
channels, each decoded here by a plain class that the socket layer (:mod:`broker._broker`) feeds:

- :class:`ProxyCounters`: the reply to ``STATISTICS`` on the proxy's control socket, eight
  little-endian uint64 frames. libzmq counts *frames* ("messages" in its docs) and bytes per socket
  and direction; a tickbus message is one frame (format 2), so frames are messages.
- :class:`SubscriptionTable`: the frontend XSUB forwards each distinct subscribe (``b'\\x01' + prefix``)
  and unsubscribe (``b'\\x00' + prefix``) to every publisher, including the broker's own internal one,
  so the set of live prefixes is known exactly.
- connected publishers and subscribers come from socket monitor events (:mod:`broker._peers`).

Limits: garbage multi-frame messages skew ``messages_forwarded``; frames counted as sent to the
XPUB may still be dropped there for a slow subscriber (HWM) or when no subscriber wants them.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from observability import BrokerError

from ._envelope import encode_header, encode_message, encode_payload
from ._keys import encode_key
from ._reserved import BROKER_STATS

STATS_KEY = BROKER_STATS
"""The key statistics messages are published on (reserved: ``('*',)`` patterns do not match it)."""

_COUNTERS = struct.Struct("<Q")
_N_COUNTERS = 8
_SUBSCRIBE, _UNSUBSCRIBE = 1, 0


@dataclass(frozen=True, slots=True)
class ProxyCounters:
    """The eight counters of libzmq's ``zmq_proxy_steerable`` ``STATISTICS`` reply (frames and bytes)."""

    frontend_frames_in: int
    frontend_bytes_in: int
    frontend_frames_out: int
    frontend_bytes_out: int
    backend_frames_in: int
    backend_bytes_in: int
    backend_frames_out: int
    backend_bytes_out: int

    @classmethod
    def from_frames(cls, frames: Sequence[bytes]) -> ProxyCounters:
        """Decode the reply; :class:`BrokerError` when it is not eight 8-byte frames."""
        if len(frames) != _N_COUNTERS or any(len(f) != _COUNTERS.size for f in frames):
            raise BrokerError(
                f"proxy STATISTICS reply has {len(frames)} frames of sizes {[len(f) for f in frames]}, "
                f"not {_N_COUNTERS} uint64 counters; is libzmq older than 4.3.5?"
            )
        return cls(*(_COUNTERS.unpack(f)[0] for f in frames))


class SubscriptionTable:
    """The distinct key prefixes subscribed at the broker, from the frames the XSUB sends upstream."""

    __slots__ = ("_prefixes",)

    def __init__(self) -> None:
        self._prefixes: set[bytes] = set()

    def apply(self, frame: bytes) -> bool:
        """Record a subscribe/unsubscribe frame; False (and no change) for any other frame."""
        if not frame:
            return False
        kind, prefix = frame[0], frame[1:]
        if kind == _SUBSCRIBE:
            self._prefixes.add(prefix)
        elif kind == _UNSUBSCRIBE:
            self._prefixes.discard(prefix)
        else:
            return False
        return True

    def wants(self, key: bytes) -> bool:
        """True when some subscribed prefix matches the wire key ``key``."""
        return any(key.startswith(p) for p in self._prefixes)

    @property
    def prefixes(self) -> frozenset[bytes]:
        """The subscribed prefixes now."""
        return frozenset(self._prefixes)

    def __len__(self) -> int:
        return len(self._prefixes)


@dataclass(frozen=True, slots=True)
class BrokerStatistics:
    """A snapshot of a running broker (see :meth:`Broker.statistics`); counters are since start.

    Frame counters come from libzmq's proxy: ``frames_in``/``bytes_in`` were received from publishers
    on the frontend (the broker's own statistics messages included), ``frames_out``/``bytes_out``
    handed to the backend XPUB, which then sends each to every subscriber that wants it.
    ``messages_forwarded`` is ``frames_out``, exact while every publisher speaks tickbus's
    three-frame envelope. ``subscription_frames_in`` counts subscribe/unsubscribe frames from
    subscribers, ``subscription_frames_out`` those the frontend passed on to publishers.
    """

    uptime_s: float
    frames_in: int
    bytes_in: int
    frames_out: int
    bytes_out: int
    messages_forwarded: int
    subscription_frames_in: int
    subscription_frames_out: int
    subscribers: int
    publishers: int
    subscriptions: int
    refused: int = 0
    """Connections refused at the handshake (CURVE: no key, a wrong key, a key not allow-listed)."""
    lvc: dict[str, int] | None = None
    """The last-value cache's counters (``broker.CacheStatistics`` as a dict); None without a cache."""
    checked: bool = False
    """True when per-identity permissions are on (the Python forwarder checks every message)."""
    denied: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    """Messages and subscriptions dropped by the permissions, identity -> kind -> count (see
    ``broker._checked.KINDS``); empty without permissions."""

    @classmethod
    def build(
        cls,
        counters: ProxyCounters,
        *,
        uptime_s: float,
        subscribers: int,
        publishers: int,
        subscriptions: int,
        refused: int = 0,
        lvc: dict[str, int] | None = None,
        checked: bool = False,
        denied: dict[str, dict[str, int]] | None = None,
    ) -> BrokerStatistics:
        """Combine the proxy counters with the connection and subscription counts."""
        return cls(
            uptime_s=uptime_s,
            frames_in=counters.frontend_frames_in,
            bytes_in=counters.frontend_bytes_in,
            frames_out=counters.backend_frames_out,
            bytes_out=counters.backend_bytes_out,
            messages_forwarded=counters.backend_frames_out,
            subscription_frames_in=counters.backend_frames_in,
            subscription_frames_out=counters.frontend_frames_out,
            subscribers=subscribers,
            publishers=publishers,
            subscriptions=subscriptions,
            refused=refused,
            lvc=lvc,
            checked=checked,
            denied=denied if denied is not None else {},
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (the statistics message payload adds the endpoints)."""
        return dataclasses.asdict(self)


class StatsEnvelope:
    """Builds the frame of each statistics message, with sequence numbers from 1."""

    __slots__ = ("_seq", "backend", "frontend", "key", "publisher_id")

    def __init__(self, publisher_id: str, frontend: Sequence[str], backend: Sequence[str]) -> None:
        self.publisher_id = publisher_id
        self.frontend, self.backend = list(frontend), list(backend)
        self.key = encode_key(STATS_KEY)
        self._seq = 0

    @property
    def seq(self) -> int:
        """The sequence number of the last message built (0 before the first)."""
        return self._seq

    def frames(self, stats: BrokerStatistics, *, mono_ns: int, wall_ns: int) -> list[bytes]:
        """``[frame]`` (one frame, format 2) for ``stats``; the payload is :meth:`BrokerStatistics.as_dict`
        plus ``frontend`` and ``backend`` (the bound endpoint lists)."""
        self._seq += 1
        payload = stats.as_dict()
        payload["frontend"] = self.frontend
        payload["backend"] = self.backend
        header = encode_header(self.publisher_id, self._seq, mono_ns, wall_ns)
        return [encode_message(self.key, header, encode_payload(payload))]
