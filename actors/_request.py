"""The request/reply protocol without sockets or asyncio: the payloads of requests and replies, the
table of outstanding asks, and the counters. The design and the asyncio layer: :mod:`actors._ask`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from broker import ASK, MAX_PUBLISHER_ID, WILDCARD, Key, PossibleKey

_REMEMBER_EXPIRED = 10_000
MAX_REPLY_TO = MAX_PUBLISHER_ID
"""Bytes of a request's ``reply_to``: an inbox is a publisher id, which fits the header's 255 bytes.
A longer one is refused (counted ``malformed``): each answerer caches its reply key and, until the
inbox is routed, looks its prefixes up on every subscription change."""

T = TypeVar("T")


def request_pattern(pattern: PossibleKey) -> Key:
    """The subscription pattern an answerer of ``pattern`` uses: ``('$ask', *pattern)``."""
    return Key(ASK, *Key.create_from(pattern))


class Request(NamedTuple):
    """A parsed request: where to reply, its id, its wall-clock deadline (ns) and the payload."""

    reply_to: str
    id: int
    deadline_ns: int
    payload: Any


def encode_request(inbox: str, id_: int, deadline_ns: int, payload: Any) -> dict[str, Any]:
    """The payload published at ``('$ask', *key)``."""
    return {"reply_to": inbox, "id": id_, "deadline": deadline_ns, "payload": payload}


def parse_request(message: Any) -> Request | str:
    """The :class:`Request` in a received payload, or why it is not one (a short reason)."""
    if not isinstance(message, dict):
        return f"request is a {type(message).__name__}, not a map"
    reply_to, id_, deadline = message.get("reply_to"), message.get("id"), message.get("deadline")
    if isinstance(reply_to, str) and (
        len(reply_to) > MAX_REPLY_TO or len(reply_to.encode(errors="replace")) > MAX_REPLY_TO
    ):  # the first test decides for a huge one without copying it
        return f"request's reply_to {reply_to[:40]!r}... is over {MAX_REPLY_TO} bytes"
    if not isinstance(reply_to, str) or not reply_to or "\x00" in reply_to or reply_to == WILDCARD:
        return f"request has no usable reply_to ({reply_to!r:.80})"
    if type(id_) is not int or type(deadline) is not int:
        return f"request id {id_!r:.40} or deadline {deadline!r:.40} is not an integer"
    return Request(reply_to, id_, deadline, message.get("payload"))


def encode_reply(id_: int, value: Any) -> dict[str, Any]:
    """The payload of a successful reply."""
    return {"id": id_, "ok": value}


def encode_error(id_: int, error_type: str, message: str, answerer: str) -> dict[str, Any]:
    """The payload of a reply saying the answer failed."""
    return {"id": id_, "error": {"type": error_type, "message": message, "answerer": answerer}}


class Reply(NamedTuple):
    """A parsed reply: its id, and either the value or the error map (``error`` is None on success)."""

    id: int
    value: Any
    error: dict[str, str] | None


def parse_reply(message: Any) -> Reply | str:
    """The :class:`Reply` in a received payload, or why it is not one."""
    if not isinstance(message, dict) or type(message.get("id")) is not int:
        return "reply is not a map with an integer id"
    if "ok" in message:
        return Reply(message["id"], message["ok"], None)
    error = message.get("error")
    if not isinstance(error, dict) or not all(isinstance(error.get(f), str) for f in ("type", "message")):
        return "reply has neither 'ok' nor a well-formed 'error'"
    return Reply(
        message["id"],
        None,
        {"type": error["type"], "message": error["message"], "answerer": str(error.get("answerer", "?"))},
    )


class PendingTable(Generic[T]):
    """Outstanding asks by id, and what a reply to an id that is not outstanding is.

    Ids count from 1. A reply's id is an answer (outstanding), late (its ask timed out or was
    cancelled, among the last ``remember`` such), a duplicate (issued, but answered already or
    forgotten long ago) or unknown (never issued here).
    """

    def __init__(self, remember: int = _REMEMBER_EXPIRED) -> None:
        self._pending: dict[int, T] = {}
        self._expired: dict[int, None] = {}  # insertion-ordered: the oldest goes first
        self._remember = remember
        self.issued = 0
        self.late = self.duplicates = self.unknown = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, waiter: T) -> int:
        """Register ``waiter`` under a fresh id and return the id."""
        self.issued += 1
        self._pending[self.issued] = waiter
        return self.issued

    def discard(self, id_: int) -> None:
        """Forget an id whose request never left (publishing it raised)."""
        self._pending.pop(id_, None)

    def expire(self, id_: int) -> None:
        """The ask ``id_`` stopped waiting (timeout, cancellation): a reply from now on is late."""
        if self._pending.pop(id_, None) is None:
            return
        self._expired[id_] = None
        if len(self._expired) > self._remember:
            del self._expired[next(iter(self._expired))]

    def take(self, id_: int) -> T | None:
        """The waiter of a reply's id, or None after counting why there is none."""
        waiter = self._pending.pop(id_, None)
        if waiter is not None:
            return waiter
        if id_ in self._expired:  # the first reply after its ask stopped waiting
            del self._expired[id_]
            self.late += 1
        elif 0 < id_ <= self.issued:
            self.duplicates += 1
        else:
            self.unknown += 1
        return None


@dataclass(frozen=True)
class AskStatistics:
    """Request/reply counters of one hub: asking side, then answering side."""

    asked: int
    """Requests sent."""
    answered: int
    """Asks that got their reply (a value or an answerer's error) in time."""
    failed: int
    """Of those, replies saying the answerer failed (raised as :class:`AnswerError`)."""
    timeouts: int
    """Asks that raised :class:`AskTimeoutError`."""
    no_answerer: int
    """Asks refused at once with :class:`NoAnswererError`."""
    pending: int
    """Asks waiting now."""
    late: int
    """Replies that arrived after their ask had timed out or been cancelled (dropped)."""
    duplicates: int
    """Second replies to one ask, or late replies too old to be remembered (dropped)."""
    unknown: int
    """Replies to ids this hub never issued (dropped)."""
    malformed: int
    """Requests or replies that could not be parsed (dropped)."""
    requests_handled: int
    """Requests answered by actors on this hub."""
    answer_errors: int
    """Of those, answers that raised (sent back as an error reply)."""
    expired: int
    """Requests dropped unhandled because their deadline had passed when dequeued."""
    replies_unrouted: int
    """Replies a broker-connected hub skipped because nobody subscribes to the inbox any more."""
    refused: int = 0
    """Asks refused at once with :class:`AskError`: ``max_pending_asks`` were waiting already."""
    replies_waiting: int = 0
    """Replies held now until their asker's inbox is routed to this hub."""
    replies_dropped: int = 0
    """Replies dropped because ``max_pending_asks`` replies were held already for unrouted inboxes."""
