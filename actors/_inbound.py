"""Inbound protocol: from received frames to deliveries, with every reject counted.

Socket-free: the remote hub hands :meth:`Inbound.read` a function that receives one frame (or hands
each frame to :meth:`Inbound.handle`). Each frame: find the key's end, decode and cache the key (one
over ``max_key`` bytes is dropped first, ``oversize``), decode and validate the header (the common
shape inline), record the sequence, match the subscription index and only then decode the payload
(a message nobody in this process wants is never unpacked). A frame that fails any step is dropped,
counted under its reason and logged rate-limited; nothing raises out of :meth:`handle` or
:meth:`read` but a subscriber's own bug.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker import (
    FIXED,
    FLAG_TRACE,
    FORMAT_VERSION,
    DecodeLimits,
    Header,
    Key,
    SubscriptionIndex,
    decode_header_at,
    decode_key,
    decode_large_payload,
    decode_message,
    decode_payload,
    decode_small_payload,
    describe_frames,
    header_length,
    trace_at,
)
from observability import EnvelopeError, InvalidKeyError, RateLimitedLog

from ._hub import Route
from ._liveness import HEARTBEAT_CONTAINERS, HEARTBEAT_PREFIX, is_farewell, parse_heartbeat
from ._sequence import Observation, SequenceTracker

DEFAULT_MAX_KEY = 512
"""Bytes of a received wire key (segments and separators); longer keys are dropped, ``oversize``.
The recorded production keys (``aiopubsub_recorded_keys``) are at most 87 bytes; a reply key to an
inbox of 255 bytes (the publisher-id limit) is 263. 100,000 cached keys (``_CACHE_LIMIT``) at 512
bytes cost ~140 MiB with their streams (at 87 bytes: ~56 MiB); unbounded, 200 of 1.9 MB cost 730."""
_CACHE_LIMIT = 100_000
_PUBLISHER_LIMIT = 10_000
_unpack_fixed = FIXED.unpack_from
_FIXED_SIZE = FIXED.size
_new_header = tuple.__new__  # Header(...) without the namedtuple's keyword handling
_DROPPED: Any = object()  # what _payload returns for a payload it counted and dropped


def _no_rest() -> tuple[list[bytes], bool]:
    return [], True


class MessageCut(Exception):  # noqa: N818 -- a signal to the reader, not an error
    """Raised out of :meth:`Inbound.read` (and :meth:`Inbound.handle`) once a multi-frame message was
    counted whose frames ``rest_of_message`` did not all read: the reader stops its slice, and its
    next callbacks skip the remaining frames first, a bounded number each."""


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
        max_key: int = DEFAULT_MAX_KEY,
    ) -> None:
        self._index = index
        self._max_payload = max_payload
        # each cached key and tracked stream keeps its bytes: this bounds them, not the peer
        self._max_key = max_key
        self._limits = limits if limits is not None else DecodeLimits(max_bytes=max_payload)
        # payloads above this go the counted way, which also checks max_payload
        self._counted_above = min(self._limits.counted_above, max_payload)
        # a heartbeat's containers: no more than the largest one a hub sends (1 MiB of entries
        # under the data path's 100,000 took ~60-90 ms of every subscribed hub's loop to refuse)
        self._heartbeat_limits = dataclasses.replace(
            self._limits, max_containers=min(self._limits.max_containers, HEARTBEAT_CONTAINERS)
        )
        self._log = log
        self._name = name
        self._keys: dict[bytes, Key] = {}
        self.tracker = tracker if tracker is not None else SequenceTracker()
        # the tracker's table, for the inlined fast path (none with several brokers: each message
        # also updates its broker's table, see actors._redundancy)
        self._last = self.tracker.last if self.tracker.inline else {}
        self.received = self.delivered = self.unmatched = self.malformed = self.oversize = 0
        self.route_errors = 0  # routes that raised (counted with the hub's listener errors)
        self.heartbeats = 0
        self.malformed_by_reason: dict[str, int] = {}  # frames, key, header, payload, oversize, heartbeat
        # the first message processed since the lag check last took it: the oldest, so a backlog
        # drained between two checks is still seen (see actors._liveness.LagMonitor)
        self.oldest_header: Header | None = None
        # (publisher id, interval, farewell: the publisher announced it is closing)
        self.on_heartbeat: Callable[[str, float, bool], None] | None = None
        # the rest of a multi-frame message whose first frame has no key end (a format-1 sender):
        # the hub reads it so the message is counted once, naming its version. It returns the
        # frames it kept (the first three, then empty placeholders) and whether it read them all:
        # a hub reads a bounded number per call and skips the others in its next callbacks
        self.rest_of_message: Callable[[], tuple[list[bytes], bool]] = _no_rest
        self._publishers: dict[bytes, str] = {}

    def handle(self, frame: bytes) -> None:  # noqa: PLR0911, PLR0915 -- the hot path, inlined on purpose
        """Process one received frame: ``key KEY_END header payload`` (see ``broker._envelope``)."""
        self.received += 1
        end = frame.find(b"\xff")
        if end < 0:
            self._no_key_end(frame)
            return
        kb = frame[:end]
        key = self._keys.get(kb)
        if key is None:
            if end > self._max_key:  # before it is cached or tracked: a cached key pays nothing
                self.oversize += 1
                self._drop("oversize", "dropped a message with a {}-byte key {!r}... (max_key)", end, kb[:40])
                return
            if kb.startswith(HEARTBEAT_PREFIX):  # never cached, so ordinary keys pay nothing
                self._heartbeat(frame)
                return
            try:
                key = decode_key(kb)
            except InvalidKeyError as exc:
                self._drop("key", "dropped a message with a bad key: {}", exc)
                return
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            self._keys[kb] = key
        # the header's common shape inline: no trace context, a publisher id seen before
        start = end + 1
        publisher = None
        if len(frame) >= start + _FIXED_SIZE:
            version, flags, publen, seq, mono_ns, wall_ns = _unpack_fixed(frame, start)
            stop = start + _FIXED_SIZE + publen
            if version == FORMAT_VERSION and not flags and seq > 0 and stop <= len(frame):
                publisher = self._publishers.get(frame[start + _FIXED_SIZE : stop])
        if publisher is not None:
            header = _new_header(Header, (FORMAT_VERSION, publisher, seq, mono_ns, wall_ns, None))
        else:
            try:
                stop = start + header_length(frame, start)
                header = decode_header_at(frame, start)
            except EnvelopeError as exc:
                self._drop("header", "dropped a message on {} with a bad header: {}", key, exc)
                return
            at = start + _FIXED_SIZE
            self._remember(frame[at : at + frame[start + 2]], header.publisher)
        # SequenceTracker.observe's fast path, inlined (one tuple, one dict get, one dict set).
        stream = (header.publisher, kb)
        seq = header.seq
        last = self._last.get(stream)
        ahead = True  # the number is past the stream's head: not a duplicate, replay or late copy
        if last is not None and seq == last + 1:
            self._last[stream] = seq
        else:
            seen = self.tracker.observe(header.publisher, kb, seq)
            ahead = seen <= Observation.GAP
            if seen > Observation.FIRST:
                if seen >= Observation.REDUNDANT:  # several brokers: not delivered (now)
                    if seen is Observation.HELD:
                        self.tracker.attach(frame)  # type: ignore[attr-defined]
                    elif seen is Observation.REPEATED:
                        self._log_sequence(seen, key, header.publisher, seq)
                    return
                self._log_sequence(seen, key, header.publisher, seq)
        routes = self._index.match(key)
        if not routes:
            self.unmatched += 1
            return
        if len(frame) - stop <= self._counted_above:  # the common case, inline: one C call
            try:
                payload = decode_small_payload(frame[stop:])
            except Exception as exc:  # the decoder raises several unrelated types, and so can ext hooks
                self._drop("payload", "dropped a message on {}: payload is not valid msgpack: {}", key, exc)
                return
        elif (payload := self._large_payload(key, memoryview(frame)[stop:])) is _DROPPED:
            return
        # the lag sample: a message delivered and new to its stream, never one nobody here wants, a
        # duplicate or a replay (any send time costs a peer nothing there: actors._liveness.LagMonitor)
        if ahead and self.oldest_header is None:
            self.oldest_header = header
        for route in routes:
            try:
                route(key, payload, header)
            except Exception as exc:  # one route's failure must never leave the receive path
                self._route_failed(key, exc)
        self.delivered += len(routes)

    def _route_failed(self, key: Key, exc: Exception) -> None:
        self.route_errors += 1
        self._log.log(
            "ERROR", "route-failure", "hub {}: a route failed on {}: {!r:.200}", self._name, key, exc
        )

    def read(  # noqa: PLR0915 -- the hot path, inlined on purpose
        self, receive: Callable[[], bytes], empty: type[Exception], count: int
    ) -> int:
        """Receive up to ``count`` frames, each with ``receive()``, and process each as :meth:`handle`
        would; return how many were received (fewer than ``count`` once ``receive`` raised ``empty``).

        The common shape runs here with everything in locals: a cached key, a format-2 header
        without trace context from a publisher seen before, the next number of its stream, at least
        one route, a payload that decodes in one call. Anything else goes to :meth:`handle`, which
        counts and logs it. Frames are received one at a time, so a multi-frame message's other
        frames are still in the socket when :meth:`handle` reads them (``rest_of_message``).
        """
        keys = self._keys
        publishers = self._publishers
        last = self._last
        match = self._index.match
        counted_above = self._counted_above
        slow = self.handle
        fixed_size = _FIXED_SIZE
        flag_trace = FLAG_TRACE
        received = delivered = n = 0
        try:
            while n < count:
                try:
                    frame = receive()
                except empty:
                    break
                n += 1
                end = frame.find(b"\xff")
                kb = frame[:end]
                key = keys.get(kb) if end > 0 else None
                size = len(frame)
                if key is None or size < end + 1 + fixed_size:
                    slow(frame)
                    continue
                start = end + 1
                version, flags, publen, seq, mono_ns, wall_ns = _unpack_fixed(frame, start)
                stop = start + fixed_size + publen
                publisher = (
                    publishers.get(frame[start + fixed_size : stop])
                    if version == FORMAT_VERSION and stop <= size
                    else None
                )
                if publisher is None:
                    slow(frame)
                    continue
                trace = None
                if flags:  # a sampled message: its trace context inline as well, anything else checked
                    traced = trace_at(frame, stop, start) if flags == flag_trace else None
                    if traced is None:
                        slow(frame)
                        continue
                    trace, stop = traced
                stream = (publisher, kb)
                previous = last.get(stream)  # none: the stream's first message, the tracker's to see
                if previous is None or seq != previous + 1 or size - stop > counted_above:
                    slow(frame)
                    continue
                routes = match(key)
                if not routes:
                    slow(frame)
                    continue
                try:
                    payload = decode_small_payload(frame[stop:])
                except Exception:  # handle() decodes it again, and counts and logs why
                    slow(frame)
                    continue
                last[stream] = seq
                received += 1
                header = _new_header(Header, (FORMAT_VERSION, publisher, seq, mono_ns, wall_ns, trace))
                if self.oldest_header is None:
                    self.oldest_header = header
                for route in routes:
                    try:
                        route(key, payload, header)
                    except Exception as exc:  # one route's failure must never leave the receive path
                        self._route_failed(key, exc)
                delivered += len(routes)
        finally:
            self.received += received
            self.delivered += delivered
        return n

    def read_copies(  # noqa: PLR0915 -- the hot path, inlined on purpose
        self, receive: Callable[[], bytes], empty: type[Exception], count: int
    ) -> int:
        """:meth:`read` for a hub on several brokers (the tracker a
        :class:`~actors._redundancy.RedundantTracker`, its ``source`` the broker ``receive`` reads).

        Inline: the common shape of :meth:`read` whose number is the next from this broker and,
        as the tracker's :meth:`~actors._redundancy.RedundantTracker.next_copy` says, either the
        stream's next (delivered) or another broker's copy of one delivered (counted, dropped: half
        the frames with both brokers up). Anything else goes to :meth:`handle`, as every frame did.
        """
        keys = self._keys
        publishers = self._publishers
        next_copy = self.tracker.next_copy  # type: ignore[attr-defined]
        match = self._index.match
        counted_above = self._counted_above
        slow = self.handle
        fixed_size = _FIXED_SIZE
        flag_trace = FLAG_TRACE
        received = delivered = n = 0
        try:
            while n < count:
                try:
                    frame = receive()
                except empty:
                    break
                n += 1
                end = frame.find(b"\xff")
                kb = frame[:end]
                key = keys.get(kb) if end > 0 else None
                size = len(frame)
                if key is None or size < end + 1 + fixed_size:
                    slow(frame)
                    continue
                start = end + 1
                version, flags, publen, seq, mono_ns, wall_ns = _unpack_fixed(frame, start)
                stop = start + fixed_size + publen
                publisher = (
                    publishers.get(frame[start + fixed_size : stop])
                    if version == FORMAT_VERSION and seq > 0 and stop <= size
                    else None
                )
                if publisher is None:
                    slow(frame)
                    continue
                trace = None
                if flags:  # as in read()
                    traced = trace_at(frame, stop, start) if flags == flag_trace else None
                    if traced is None:
                        slow(frame)
                        continue
                    trace, stop = traced
                if size - stop > counted_above:
                    slow(frame)
                    continue
                seen = next_copy((publisher, kb), seq)
                if seen < 0:
                    slow(frame)
                    continue
                received += 1
                if seen:  # redundant: counted by the tracker
                    continue
                routes = match(key)
                if not routes:
                    self.unmatched += 1
                    continue
                try:
                    payload = decode_small_payload(frame[stop:])
                except Exception as exc:  # counted and logged as handle() does
                    self._drop(
                        "payload", "dropped a message on {}: payload is not valid msgpack: {}", key, exc
                    )
                    continue
                header = _new_header(Header, (FORMAT_VERSION, publisher, seq, mono_ns, wall_ns, trace))
                if self.oldest_header is None:  # as in handle(): only from a message delivered
                    self.oldest_header = header
                for route in routes:
                    try:
                        route(key, payload, header)
                    except Exception as exc:  # one route's failure must never leave the receive path
                        self._route_failed(key, exc)
                delivered += len(routes)
        finally:
            self.received += received
            self.delivered += delivered
        return n

    def _remember(self, raw: bytes, publisher: str) -> None:
        """Cache a publisher id's bytes once its header decoded, for the inline path (bounded)."""
        if raw not in self._publishers:
            if len(self._publishers) >= _PUBLISHER_LIMIT:
                self._publishers.clear()
            self._publishers[raw] = publisher

    def _no_key_end(self, frame: bytes) -> None:
        rest, whole = self.rest_of_message()
        if not whole:  # a million empty frames read at once held the loop for a second
            self._drop(
                "frames",
                "dropped a message of more than {:,} frames (format {} sends one)",
                len(rest) + 1,
                FORMAT_VERSION,
            )
            raise MessageCut
        if rest:
            self._drop("frames", "dropped {}", describe_frames([frame, *rest]))
            return
        try:
            decode_message(frame)
        except EnvelopeError as exc:
            self._drop("key", "dropped a message: {}", exc)

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

    def _heartbeat(self, frame: bytes) -> None:
        try:
            _, header, pb = decode_message(frame)
        except EnvelopeError as exc:
            self._drop("heartbeat", "dropped a heartbeat with a bad header: {}", exc)
            return
        if len(pb) > self._max_payload:  # as any payload: control traffic is no less untrusted
            self.oversize += 1
            self._drop(
                "oversize", "dropped a {}-byte heartbeat from {} (max_payload)", len(pb), header.publisher
            )
            return
        try:
            body = decode_payload(pb, self._heartbeat_limits)  # the data path's, fewer containers
            interval, entries = parse_heartbeat(body)
        except Exception as exc:  # not msgpack, over the limits (EnvelopeError), not a heartbeat (ValueError)
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
            self.on_heartbeat(header.publisher, interval, is_farewell(body))

    def handle_frames(self, frames: list[bytes]) -> None:
        """Process one received message given as a list of frames (format 2 sends exactly one)."""
        if len(frames) != 1:
            self.received += 1
            self._drop("frames", "dropped {}", describe_frames(frames))
            return
        self.handle(frames[0])

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
