"""Snapshots for late joiners, client half: the ZeroMQ guide's Clone pattern. Socket-free.

The broker's last-value cache (``broker._lvc``) holds the latest message per key. A subscriber that
wants the current state as well as the updates:

1. subscribes to the live pattern first, through a :class:`SnapshotMerge` that holds live messages back;
2. asks the cache for everything matching the pattern (:class:`SnapshotRequest` collects the reply's
   parts, which arrive on the hub's inbox ``('$lvc', 'snap', <publisher id>)``);
3. delivers the snapshot, then the held-back live messages that are newer than the snapshot's entry
   for their key (same publisher, higher sequence; another publisher's message always counts as
   newer), then lets live messages through directly.

So nothing published after the subscription is missed, and no message is applied twice.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from msgpack import unpackb

from broker import LVC_INBOX, LVC_REQUEST, Header, Key, decode_header, decode_key, ext_hook
from observability import ConnectError, EnvelopeError, RateLimitedLog, SnapshotError

from ._hub import Hub, Message, Route
from ._limits import DEFAULT_MAX_SNAPSHOT_ENTRIES

REQUEST = Key(*LVC_REQUEST)
MAX_PARTS = 65_536
"""Parts one snapshot reply may have (the broker's cache sends ~2,000 for a million small keys)."""


class SnapshotMerge:
    """The route a snapshot subscription registers: holds live messages until the snapshot is in."""

    __slots__ = ("_buffer", "_pending", "route", "skipped", "target")

    def __init__(self, target: Route) -> None:
        self.target = target
        self._pending = True
        self._buffer: list[tuple[Key, Any, Header | None]] = []
        self.skipped = 0  # live messages already contained in the snapshot

        def route(key: Key, payload: Any, header: Header | None) -> None:
            if self._pending:
                self._buffer.append((key, payload, header))
            else:
                target(key, payload, header)

        self.route: Route = route

    def apply(self, snapshot: list[Message]) -> int:
        """Deliver ``snapshot``, then the held-back newer live messages; returns how many were held."""
        newest: dict[Key, tuple[str, int]] = {}
        for message in snapshot:
            self.target(message.key, message.payload, message.header)
            if message.header is not None:
                newest[message.key] = (message.header.publisher, message.header.seq)
        held = len(self._buffer)
        for key, payload, header in self._buffer:
            seen = newest.get(key)
            if (
                seen is not None
                and header is not None
                and header.publisher == seen[0]
                and header.seq <= seen[1]
            ):
                self.skipped += 1
                continue
            self.target(key, payload, header)
        self._buffer.clear()
        self._pending = False
        return held

    def abandon(self) -> None:
        """No snapshot after all: deliver what was held and go live."""
        self.apply([])


class SnapshotRequest:
    """Collects the parts of one snapshot reply and decodes its entries.

    The reply comes from the wire, so from anyone who can publish on this hub's inbox: parts are
    checked against each other, and a reply announcing or bringing more than ``max_entries``
    entries (or :data:`MAX_PARTS` parts) fails the snapshot instead of filling memory.
    """

    def __init__(self, request_id: str, max_entries: int = DEFAULT_MAX_SNAPSHOT_ENTRIES) -> None:
        self.id = request_id
        self.done: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()
        self._parts: dict[int, list[Any]] = {}
        self._count: int | None = None  # parts announced by the first part
        self._entries = 0
        self._max_entries = max_entries
        self.rejected = 0  # entries that did not decode (counted, never delivered)
        # the cache whose part came first (its publisher id): with several brokers every cache
        # answers, and one reply is taken whole, never parts of two
        self.responder: str | None = None

    def add_part(self, part: Any) -> None:
        """Take one reply part (``{"id", "part", "parts", "entries"}``); ``ValueError`` if malformed."""
        if not isinstance(part, dict):
            raise ValueError("snapshot part is not a map")
        if self.done.done():
            raise ValueError("snapshot part after the reply was complete")
        error = part.get("error")
        if isinstance(error, str):  # the cache does not cover the pattern, or refused the request
            self.done.set_exception(SnapshotError(f"no snapshot: {error[:300]}"))
            return
        index, count, entries = part.get("part"), part.get("parts"), part.get("entries")
        if (
            type(index) is not int
            or type(count) is not int
            or not 0 <= index < count
            or not isinstance(entries, list)
        ):
            raise ValueError("snapshot part lacks a valid 'part'/'parts'/'entries'")
        if self._count is not None and count != self._count:
            raise ValueError(f"snapshot part says {count} parts, an earlier one {self._count}")
        if index in self._parts:
            raise ValueError(f"snapshot part {index} arrived twice")
        if count > min(MAX_PARTS, self._max_entries + 1) or self._entries + len(entries) > self._max_entries:
            self.done.set_exception(
                SnapshotError(
                    f"snapshot reply too large: {count} parts, over {self._max_entries} entries or "
                    f"{MAX_PARTS} parts (raise max_snapshot_entries in actors.connect if it is genuine)"
                )
            )
            raise ValueError("snapshot reply over the bounds on parts or entries")
        self._count = count
        self._entries += len(entries)
        self._parts[index] = entries
        if len(self._parts) == count:
            self.done.set_result(self._decode(count))

    def _decode(self, count: int) -> list[Message]:
        out: list[Message] = []
        for index in range(count):
            for entry in self._parts[index]:
                try:
                    if not isinstance(entry, list) or len(entry) != 3:
                        raise EnvelopeError("snapshot entry is not [key, header, payload]")
                    kb, hb, pb = entry
                    out.append(
                        Message(
                            decode_key(kb),
                            unpackb(pb, ext_hook=ext_hook, strict_map_key=False),
                            decode_header(hb),
                        )
                    )
                except Exception:  # EnvelopeError, InvalidKeyError, and msgpack's several error types
                    self.rejected += 1
        self._parts.clear()
        return out


class SnapshotClient:
    """The snapshot half of a broker-connected hub: its inbox, pending requests and rejects."""

    def __init__(self, hub: Hub, publisher_id: str, log: RateLimitedLog) -> None:
        self._hub = hub
        self._log = log
        self._inbox = Key(*LVC_INBOX, publisher_id)
        self._inbox_ready = False
        self._pending: dict[str, SnapshotRequest] = {}
        self.rejects = 0  # reply parts and entries dropped (malformed, or for no pending request)
        self.redundant = 0  # reply parts from a second cache (several brokers): dropped, not rejects
        self._answered: dict[str, None] = {}  # ids of recent requests, for late second replies (bounded)

    async def fetch(self, key: tuple[str, ...], timeout: float) -> list[Message]:
        """The cached messages matching ``key`` (see ``RemoteHub.snapshot``)."""
        hub = self._hub
        pattern = Key.create_from(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not self._inbox_ready:
            hub.add_subscriber(self._inbox, self._on_part)
            self._inbox_ready = True
            await hub.sync(timeout)
        try:
            await hub.wait_for_subscribers(REQUEST, max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise no_cache_error(pattern, timeout) from None
        request = SnapshotRequest(secrets.token_hex(8), hub.limits.max_snapshot_entries)
        self._pending[request.id] = request
        try:
            hub.publish(REQUEST, request_payload(request.id, pattern, self._inbox))
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                messages = await request.done
        except TimeoutError:
            raise SnapshotError(
                f"hub {hub.name!r}: the snapshot of {pattern} did not arrive within {timeout}s"
            ) from None
        finally:
            del self._pending[request.id]
            if len(self._answered) >= _ANSWERED_LIMIT:
                del self._answered[next(iter(self._answered))]
            self._answered[request.id] = None
        if request.rejected:
            self.rejects += request.rejected
            self._log.warning(
                "snapshot", "hub {}: {} snapshot entries did not decode", hub.name, request.rejected
            )
        return messages

    async def subscribe(
        self, key: tuple[str, ...], callback: Route, timeout: float, *, required: bool
    ) -> Route:
        """Subscribe, then deliver the cached state, then every newer live message (Clone pattern)."""
        hub = self._hub
        merge = SnapshotMerge(callback)
        hub.add_subscriber(key, merge.route)
        try:
            await hub.sync(timeout)  # the live subscription is in place before the cache is read
            snapshot = await self.fetch(key, timeout)
        except (SnapshotError, ConnectError) as exc:
            if required:
                hub.remove_subscriber(key, merge.route)
                raise
            self._log.warning("snapshot", "hub {}: {} goes live without a snapshot: {}", hub.name, key, exc)
            merge.abandon()
            return merge.route
        except BaseException:
            hub.remove_subscriber(key, merge.route)
            raise
        merge.apply(snapshot)
        return merge.route

    def _on_part(self, key: Key, payload: Any, header: object) -> None:
        # on the hub's receive path, with whatever anyone published on this inbox: never raises
        try:
            request_id = payload.get("id") if isinstance(payload, dict) else None
            request = self._pending.get(request_id) if isinstance(request_id, str) else None
            responder = getattr(header, "publisher", None)
            if request is not None and request.responder is None:
                request.responder = responder
            elif (request is not None and responder != request.responder) or (
                request is None and isinstance(request_id, str) and request_id in self._answered
            ):
                self.redundant += 1  # another broker's cache answered too
                return
            if request is None:
                self.rejects += 1
                self._log.warning(
                    "snapshot-unknown",
                    "hub {}: dropped snapshot parts for no pending request ({} dropped so far)",
                    self._hub.name,
                    self.rejects,
                )
                return
            request.add_part(payload)
        except Exception as exc:  # ValueError from add_part; anything else is a bug, still not fatal
            self.rejects += 1
            self._log.warning(
                "snapshot-malformed",
                "hub {}: dropped a snapshot part: {} ({} dropped so far)",
                self._hub.name,
                exc,
                self.rejects,
            )


_ANSWERED_LIMIT = 1_000


def request_payload(request_id: str, pattern: tuple[str, ...], inbox: tuple[str, ...]) -> dict[str, Any]:
    """What a hub publishes on :data:`REQUEST` to ask for a snapshot of ``pattern``."""
    return {"id": request_id, "pattern": list(pattern), "inbox": list(inbox)}


def no_cache_error(pattern: tuple[str, ...], timeout: float) -> SnapshotError:
    """The error for a broker that has no last-value cache (nobody takes snapshot requests)."""
    return SnapshotError(
        f"no snapshot of {pattern}: the broker has no last-value cache (nobody subscribes to "
        f"{REQUEST} within {timeout}s); start the broker with --lvc PATTERN (e.g. --lvc '*')"
    )
