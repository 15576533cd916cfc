"""Inbound protocol: from received frames to deliveries, with every reject counted.

Socket-free: the remote hub reads frames and hands each frame list to :meth:`Inbound.handle`, which
checks the frame count, decodes and caches the key, decodes and validates the header, records the
sequence, matches the subscription index and only then decodes the payload (a message nobody in
this process wants is never unpacked). A frame set that fails any step is dropped, counted under its
reason and logged rate-limited; nothing raises out of :meth:`handle` but a subscriber's own bug.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from msgpack import unpackb

from broker import (
    DecodeLimits,
    Header,
    Key,
    SubscriptionIndex,
    decode_header,
    decode_key,
    decode_large_payload,
    ext_hook,
)
from observability import EnvelopeError, InvalidKeyError, RateLimitedLog

from ._hub import Route
from ._liveness import HEARTBEAT_PREFIX, parse_heartbeat
from ._sequence import Observation, SequenceTracker

_CACHE_LIMIT = 100_000
_DROPPED: Any = object()  # what _payload returns for a payload it counted and dropped


@dataclass(frozen=True)
class InboundStatistics:
    """Counters of one inbound path."""

    received: int
    delivered: int
    unmatched: int
    malformed: int
    oversize: int
    gaps: int
    duplicates: int
    reordered: int
    streams: int


class Inbound:
    """Decode, check, sequence-track and route received frame sets."""

    def __init__(
        self,
        index: SubscriptionIndex[Route],
        *,
        max_payload: int,
        log: RateLimitedLog,
        name: str,
        limits: DecodeLimits | None = None,
        tracker: SequenceTracker | None = None,
    ) -> None:
        self._index = index
        self._max_payload = max_payload
        self._limits = limits if limits is not None else DecodeLimits(max_bytes=max_payload)
        # payloads above this go the counted way, which also checks max_payload
        self._counted_above = min(self._limits.counted_above, max_payload)
        self._log = log
        self._name = name
        self._keys: dict[bytes, Key] = {}
        self.tracker = tracker if tracker is not None else SequenceTracker()
        self._last = self.tracker.last  # the tracker's table, for the inlined fast path
        self.received = self.delivered = self.unmatched = self.malformed = self.oversize = 0
        self.route_errors = 0  # routes that raised (counted with the hub's listener errors)
        self.heartbeats = 0
        self.malformed_by_reason: dict[str, int] = {}  # frames, key, header, payload, oversize, heartbeat
        # the first message processed since the lag check last took it: the oldest, so a backlog
        # drained between two checks is still seen (see actors._liveness.LagMonitor)
        self.oldest_header: Header | None = None
        self.on_heartbeat: Callable[[str, float], None] | None = None  # (publisher id, interval)

    def handle(self, kb: bytes, hb: bytes | memoryview, pb: bytes | memoryview) -> None:
        """Process one received three-frame message: key, header, payload."""
        self.received += 1
        key = self._keys.get(kb)
        if key is None:
            if kb.startswith(HEARTBEAT_PREFIX):  # never cached, so ordinary keys pay nothing
                self._heartbeat(hb, pb)
                return
            try:
                key = decode_key(kb)
            except InvalidKeyError as exc:
                self._drop("key", "dropped a message with a bad key frame: {}", exc)
                return
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            self._keys[kb] = key
        try:
            header = decode_header(hb)
        except EnvelopeError as exc:
            self._drop("header", "dropped a message on {} with a bad header: {}", key, exc)
            return
        if self.oldest_header is None:
            self.oldest_header = header
        # SequenceTracker.observe's fast path, inlined (one tuple, one dict get, one dict set).
        stream = (header.publisher, kb)
        seq = header.seq
        last = self._last.get(stream)
        if last is not None and seq == last + 1:
            self._last[stream] = seq
        else:
            seen = self.tracker.observe(header.publisher, kb, seq)
            if seen > Observation.FIRST:
                self._log_sequence(seen, key, header.publisher, seq)
        routes = self._index.match(key)
        if not routes:
            self.unmatched += 1
            return
        if len(pb) <= self._counted_above:  # the common case, inline: one C call
            try:
                payload = unpackb(pb, ext_hook=ext_hook, strict_map_key=False)
            except Exception as exc:  # msgpack raises several unrelated types, and so can ext hooks
                self._drop("payload", "dropped a message on {}: payload is not valid msgpack: {}", key, exc)
                return
        elif (payload := self._large_payload(key, pb)) is _DROPPED:
            return
        for route in routes:
            try:
                route(key, payload, header)
            except Exception as exc:  # one route's failure must never leave the receive path
                self.route_errors += 1
                self._log.log(
                    "ERROR", "route-failure", "hub {}: a route failed on {}: {!r:.200}", self._name, key, exc
                )
        self.delivered += len(routes)

    def _large_payload(self, key: Key, pb: bytes | memoryview) -> Any:
        """A payload over ``counted_above`` bytes, decoded under the limits; ``_DROPPED`` once counted."""
        if len(pb) > self._max_payload:
            self.oversize += 1
            self._drop("oversize", "dropped a {}-byte payload on {} (max_payload)", len(pb), key)
            return _DROPPED
        try:
            return decode_large_payload(pb, self._limits)  # every array and map counted (DecodeLimits)
        except EnvelopeError as exc:
            self._drop("payload", "dropped a message on {}: {}", key, exc)
        return _DROPPED

    def _heartbeat(self, hb: bytes | memoryview, pb: bytes | memoryview) -> None:
        try:
            header = decode_header(hb)
            interval, entries = parse_heartbeat(unpackb(pb, strict_map_key=False))
        except EnvelopeError as exc:
            self._drop("heartbeat", "dropped a heartbeat with a bad header: {}", exc)
            return
        except Exception as exc:  # msgpack's several error types, and ValueError from the parser
            self._drop("heartbeat", "dropped a heartbeat with a bad payload: {}", exc)
            return
        self.heartbeats += 1
        catch_up = self.tracker.catch_up
        for kb, seq in entries:
            lost = catch_up(header.publisher, kb, seq)
            if lost:
                self._log.warning(
                    "gap",  # a kind of event: never a string a peer chose
                    "gap of {} at the end of {!r} from {} (its heartbeat reports seq {})",
                    lost,
                    kb,
                    header.publisher,
                    seq,
                )
        if self.on_heartbeat is not None:
            self.on_heartbeat(header.publisher, interval)

    def handle_frames(self, frames: list[bytes]) -> None:
        """Process one received message given as a list of frames (any count)."""
        if len(frames) != 3:
            self.received += 1
            self.wrong_frame_count(len(frames), counted=True)
            return
        self.handle(*frames)

    def wrong_frame_count(self, count: int, *, counted: bool = False) -> None:
        """Count and log a received message that did not have three frames."""
        if not counted:
            self.received += 1
        self._drop("frames", "dropped a message of {} frames (expected 3)", count)

    def statistics(self) -> InboundStatistics:
        """A snapshot of the counters."""
        tracker = self.tracker
        return InboundStatistics(
            received=self.received,
            delivered=self.delivered,
            unmatched=self.unmatched,
            malformed=self.malformed,
            oversize=self.oversize,
            gaps=tracker.gaps,
            duplicates=tracker.duplicates,
            reordered=tracker.reordered,
            streams=tracker.streams(),
        )

    def _drop(self, reason: str, message: str, *args: Any) -> None:
        self.malformed += 1
        self.malformed_by_reason[reason] = self.malformed_by_reason.get(reason, 0) + 1
        self._log.warning("malformed:" + reason, "hub {}: " + message, self._name, *args)

    def _log_sequence(self, seen: Observation, key: Key, publisher: str, seq: int) -> None:
        if seen is Observation.GAP:
            self._log.warning(
                "gap",
                "gap of {} on {} from {} (now at seq {})",
                self.tracker.last_gap,
                key,
                publisher,
                seq,
            )
        else:
            self._log.warning("sequence", "{} seq {} on {} from {}", seen.name.lower(), seq, key, publisher)
