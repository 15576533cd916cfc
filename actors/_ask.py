"""Request/reply over the bus: ``await actor.ask(key, payload, timeout=...)`` and ``@answers``.

Problem: an actor needs one answer from another ("may I send this order?") routed back to it alone,
within a deadline, without a second transport, without slowing ordinary publishes, and with every
odd reply (late, duplicated, unknown, malformed) counted rather than lost or crashing a loop.

Path chosen: **over the broker, on the existing pub/sub**, not a dedicated ROUTER/DEALER path. Asks
ride the hub's two sockets, so they get the broker's tcp+ipc endpoints, reconnection, statistics
and (later) CURVE for free, answerers need no port of their own, and nothing is added to the
publish or receive fast path: asks and replies are ordinary messages on reserved keys. The price is
one extra hop (asker -> broker -> answerer -> broker -> asker, as for any pub/sub round trip) and
that routing is by subscription, so two answerers of one key both answer (the first reply wins,
the second is counted as a duplicate): run one answerer per key.

Wire, on reserved keys (first segment ``$``: a catch-all ``('*',)`` pattern does not receive them):

- request: published at ``('$ask', *key)`` with payload
  ``{"reply_to": inbox, "id": n, "deadline": wall_ns, "payload": payload}``. The ``$ask`` prefix
  keeps requests away from ordinary handlers of ``key`` and makes "somebody subscribes to
  ``('$ask', *key)``" mean "somebody answers ``key``" (the no-answerer check below).
- reply: published at ``('$reply', inbox)`` with ``{"id": n, "ok": value}`` or
  ``{"id": n, "error": {"type": ..., "message": ..., "answerer": ...}}``. The answerer builds the reply
  key from the inbox name, so a request cannot make it publish anywhere else.

Asking side (one :class:`_AskState` per hub): the inbox is the hub's ``publisher_id`` (unique per
process incarnation; in-process: hub name plus a random token), subscribed lazily on the first ask,
which then waits for a round trip through the broker (``hub.sync()``) so the subscription is in
place before any request leaves; the first ask's timeout includes that. Each ask registers a future
under the next id in a :class:`PendingTable` *before* publishing (an in-process answer can arrive
during the publish), then waits at most ``timeout`` seconds.

Failure modes:

- **no answerer**: when the hub knows that no subscription covers ``('$ask', *key)`` the ask fails at
  once with :class:`NoAnswererError` (nothing is sent). A broker-connected hub knows subscriptions by
  wire prefix; for reserved keys it ignores the empty prefix (catch-all patterns, the broker's
  last-value cache), which no tickbus pattern can match them with, so only a broad ``('$ask', *)``
  subscriber can hide a missing answerer (the ask then times out). An answerer starting at the same
  moment as the asker may not be known yet: wait for it with
  ``hub.wait_for_subscribers(('$ask', *key))``.
- **timeout**: :class:`AskTimeoutError`; the id is remembered (the last 10,000) so a reply arriving
  afterwards is counted as ``late`` and dropped, logged rate-limited.
- **answerer raised**: the exception's type and message travel back in an error reply and are raised
  in the caller as :class:`AnswerError`. It does not count toward the answering actor's
  consecutive-failure stop (a refusal is an answer), but is counted (``answer_errors``) and logged.
- **reply that cannot be sent** (not encodable, over ``max_payload``): an error reply saying so.
- **request already past its deadline** when the answerer dequeues it (it waited in the mailbox):
  not handled, counted as ``expired`` (the asker has given up). Deadlines are wall-clock ns, so
  across hosts they are as good as NTP.
- **odd replies**: duplicates (a second answer, or a late one older than what is remembered),
  unknown ids and malformed payloads are counted and logged rate-limited; nothing raises into the
  receive loop.
- **caller cancelled**: the entry is forgotten like a timeout; a reply after that counts as late.

Limits: asks are not traced (replies carry no trace context); an actor asking *itself* from inside a
handler waits for its own mailbox and times out; nothing is retried (at most once, like every
message here). A broker-connected answerer holds a reply to an inbox it does not yet know to be
subscribed (the first ask of a hub races its inbox subscription) until the ask's deadline or 5 s,
whichever comes first; a reply still unroutable then is counted (``replies_unrouted``).

Bounds (``max_pending_asks`` of :class:`HubLimits`, default 10,000): an ask beyond that many waiting
raises :class:`AskError` at once (``refused``); an answerer holds at most that many replies for
inboxes not yet routed, and drops further ones (``replies_dropped``): 20,000 asks naming inboxes
nobody reads used to pin a task each (61 MB). A request whose ``reply_to`` is over 255 bytes (an
inbox is a publisher id) is refused as malformed: a 64 KiB one blocked the answering hub's loop
for 0.5 s and each was cached.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from broker import ASK, REPLY, WILDCARD, Key, PossibleKey, validate
from observability import (
    AnswerError,
    AskError,
    AskTimeoutError,
    ConnectError,
    InvalidKeyError,
    NoAnswererError,
    RateLimitedLog,
)

from ._hub import Hub
from ._request import (
    MAX_REPLY_TO,
    AskStatistics,
    PendingTable,
    Reply,
    Request,
    encode_error,
    encode_reply,
    encode_request,
    parse_reply,
    parse_request,
)

ANSWERS_ATTR = "__tickbus_answers__"
DEFAULT_TIMEOUT = 1.0
_KEY_CACHE = 10_000
_SYNC_TIMEOUT = 10.0  # the shared inbox set-up; each ask waits at most its own timeout for it
_ROUTE_WAIT = 5.0  # seconds a reply waits at most for its inbox's subscription to reach this hub
_time_ns = time.time_ns


class _TimedOutError(Exception):
    """Set on an ask's future by its timer; the ask raises :class:`AskTimeoutError` with the details."""


F = TypeVar("F", bound=Callable[..., Any])


def answers(*patterns: PossibleKey) -> Callable[[F], F]:
    """Declare a method ``(self, key, payload) -> answer`` (sync or async) as the answerer of asks
    whose key matches one of ``patterns``; what it returns goes back to the one caller.

    >>> class Risk(Actor):
    ...     @answers(("risk", "check"))
    ...     def check(self, key, order):
    ...         return {"ok": order["qty"] <= 100}
    """
    if not patterns:
        raise TypeError("@answers needs at least one pattern, e.g. @answers(('risk', 'check'))")

    def mark(fn: F) -> F:
        setattr(fn, ANSWERS_ATTR, tuple(Key.create_from(p) for p in patterns))
        return fn

    return mark


class _AskState:
    """Request/reply state of one hub: its inbox and pending asks, and its answerers' counters."""

    def __init__(self, hub: Hub) -> None:
        self._hub_ref = weakref.ref(hub)  # weak: the state is the value of a WeakKeyDictionary keyed by hub
        publisher_id = getattr(hub, "publisher_id", None)
        # an inbox fits MAX_REPLY_TO (answerers refuse longer ones): a publisher id does, and so
        # does an in-process hub's name, cut to fit, plus a token
        self.inbox: str = (
            publisher_id
            if isinstance(publisher_id, str)
            else f"{hub.name.encode()[: MAX_REPLY_TO - 13].decode(errors='ignore')}:{secrets.token_hex(6)}"
        )
        self._inbox_key = Key(REPLY, self.inbox)
        self._table: PendingTable[asyncio.Future[Reply]] = PendingTable()
        self._keys: dict[object, Key] = {}  # key as given -> ('$ask', *key)
        self._reply_keys: dict[str, Key] = {}  # inbox -> ('$reply', inbox), answering side
        self._service_keys: dict[Key, Key] = {}  # ('$ask', *key) -> key, answering side
        self._ready = False
        self._opening: asyncio.Task[None] | None = None
        self._subscribed = False
        self._log = RateLimitedLog(hub=hub.name)
        self._sending: set[asyncio.Task[None]] = set()  # replies waiting for their route
        self.asked = self.answered = self.failed = self.timeouts = self.no_answerer = 0
        self.malformed = self.requests_handled = self.answer_errors = self.expired = self.unrouted = 0
        self.refused = self.replies_dropped = 0

    @property
    def _hub(self) -> Hub:
        hub = self._hub_ref()
        if hub is None:  # only reachable through a wrapper that outlived its hub
            raise ReferenceError("the hub of this request/reply state has been garbage-collected")
        return hub

    # -- asking ----------------------------------------------------------------------------------
    async def ask(self, key: PossibleKey, payload: Any, timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        wire_key = self._request_key(key)
        if not self._ready:
            await self._open_inbox(wire_key, timeout)
        hub = self._hub
        if not hub.has_subscribers(wire_key):
            self.no_answerer += 1
            raise NoAnswererError(
                f"nobody answers {tuple(wire_key[1:])} on hub {hub.name!r}: no @answers pattern matching it "
                f"is subscribed; start the answering actor first, or wait for it with "
                f"`await hub.wait_for_subscribers({tuple(wire_key)})`"
            )
        table = self._table
        if len(table) >= hub.limits.max_pending_asks:
            self.refused += 1
            raise AskError(
                f"hub {hub.name!r} has {len(table)} asks waiting for replies already (max_pending_asks); "
                "the answerers are slow or gone: wait for some asks to finish or raise the limit in "
                "actors.connect"
            )
        future: asyncio.Future[Reply] = loop.create_future()
        id_ = table.add(future)  # before publishing: an in-process answer can arrive during publish
        left = max(0.0, timeout - (loop.time() - started))
        try:
            hub.publish(wire_key, encode_request(self.inbox, id_, _time_ns() + int(left * 1e9), payload))
        except BaseException:
            table.discard(id_)
            raise
        self.asked += 1
        timer = loop.call_later(left, self._time_out, id_, future)  # cheaper than asyncio.timeout
        try:
            reply = await future
        except _TimedOutError:
            self.timeouts += 1
            raise AskTimeoutError(
                f"no reply to ask {id_} on {tuple(wire_key[1:])} within {timeout}s (hub {hub.name!r}); "
                "the answerer is slow, stopped or overloaded, or the timeout is too short"
            ) from None
        except BaseException:  # cancelled: a reply from now on is late
            table.expire(id_)
            if future.done() and not future.cancelled():
                future.exception()  # timed out just before the cancellation: retrieved, not logged at GC
            raise
        finally:
            timer.cancel()
        self.answered += 1
        if reply.error is None:
            return reply.value
        self.failed += 1
        error = reply.error
        raise AnswerError(
            f"{error['answerer']} failed to answer {tuple(wire_key[1:])}: "
            f"{error['type']}: {error['message']}",
            error_type=error["type"],
            answerer=error["answerer"],
        )

    def _time_out(self, id_: int, future: asyncio.Future[Reply]) -> None:
        if not future.done():
            self._table.expire(id_)
            future.set_exception(_TimedOutError())

    def _request_key(self, key: PossibleKey) -> Key:
        try:
            found = self._keys.get(key)
        except TypeError:  # unhashable (a list): build it every time
            found = None
        if found is not None:
            return found
        checked = validate(key, what="ask key")
        if not checked or WILDCARD in checked:
            raise InvalidKeyError(
                f"ask key {key!r} must be a non-empty key without '*', e.g. ('risk', 'check')"
            )
        wire_key = Key(ASK, *checked)
        if len(self._keys) < _KEY_CACHE and isinstance(key, (tuple, str)):
            self._keys[key] = wire_key
        return wire_key

    async def _open_inbox(self, wire_key: Key, timeout: float) -> None:
        if self._opening is None:
            if not self._subscribed:
                self._hub.add_subscriber(self._inbox_key, self._on_reply)
                self._subscribed = True
            self._opening = asyncio.get_running_loop().create_task(self._hub.sync(_SYNC_TIMEOUT))
            self._opening.add_done_callback(self._opened)
        try:
            await asyncio.wait_for(asyncio.shield(self._opening), timeout)
        except (TimeoutError, ConnectError) as exc:
            self.timeouts += 1
            raise AskTimeoutError(
                f"no reply to an ask on {tuple(wire_key[1:])} within {timeout}s: hub {self._hub.name!r} "
                f"could not set up its reply inbox through the broker ({exc or 'no round trip yet'})"
            ) from exc

    def _opened(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is not None:
            self._opening = None  # the next ask tries again
        else:
            self._ready = True

    def _on_reply(self, key: Key, message: Any, header: object) -> None:
        reply = parse_reply(message)
        if isinstance(reply, str):
            self._malformed("reply", reply)
            return
        table = self._table
        future = table.take(reply.id)
        if future is None:
            self._log.warning(
                "ask-odd-reply",
                "hub {}: dropped a reply to ask {} nobody awaits ({} late, {} duplicate, {} unknown so far)",
                self._hub.name,
                reply.id,
                table.late,
                table.duplicates,
                table.unknown,
            )
        elif not future.done():
            future.set_result(reply)

    def _malformed(self, what: str, reason: str) -> None:
        self.malformed += 1
        self._log.warning(
            "ask-malformed",
            "hub {}: dropped a malformed {}: {} ({} so far)",
            self._hub.name,
            what,
            reason,
            self.malformed,
        )

    # -- answering -------------------------------------------------------------------------------
    def accept(self, message: Any) -> Request | None:
        """The request in ``message``, or None when it is malformed or past its deadline (counted)."""
        request = parse_request(message)
        if isinstance(request, str):
            self._malformed("request", request)
            return None
        if _time_ns() > request.deadline_ns:
            self.expired += 1
            self._log.warning(
                "ask-expired",
                "hub {}: skipped request {} from {}: its deadline passed while it was queued ({} so far)",
                self._hub.name,
                request.id,
                request.reply_to,
                self.expired,
            )
            return None
        return request

    def reply(self, request: Request, answerer: str, value: Any) -> None:
        """Send ``value`` back to the asker; an answer that cannot be sent becomes an error reply."""
        self.requests_handled += 1
        try:
            self._send(request, encode_reply(request.id, value))
        except Exception as exc:  # not encodable, too large: the asker learns why instead of timing out
            self.fail(request, answerer, exc, counted=True)

    def fail(self, request: Request, answerer: str, exc: Exception, *, counted: bool = False) -> None:
        """Send ``exc`` back to the asker as an error reply, count it and log it (rate-limited)."""
        if not counted:
            self.requests_handled += 1
        self.answer_errors += 1
        self._log.warning(
            "ask-answer-error:" + answerer,
            "{} failed to answer request {} from {}: {!r} ({} answer errors so far)",
            answerer,
            request.id,
            request.reply_to,
            exc,
            self.answer_errors,
        )
        try:
            self._send(request, encode_error(request.id, type(exc).__name__, str(exc)[:1000], answerer))
        except Exception as again:  # the hub itself refuses: say so, the asker will time out
            self._log.warning("ask-reply-failed", "{} could not send an error reply: {!r}", answerer, again)

    def service_key(self, wire_key: Key) -> Key:
        """The asked key of a request received at ``wire_key`` (``('$ask', *key)``)."""
        key = self._service_keys.get(wire_key)
        if key is None:
            if len(self._service_keys) >= _KEY_CACHE:
                self._service_keys.clear()
            key = self._service_keys[wire_key] = Key(*wire_key[1:])
        return key

    def _send(self, request: Request, reply: dict[str, Any]) -> None:
        key = self._reply_keys.get(request.reply_to)
        if key is None:
            if len(self._reply_keys) >= _KEY_CACHE:
                self._reply_keys.clear()
            key = self._reply_keys[request.reply_to] = Key(REPLY, request.reply_to)
        hub = self._hub
        if not hub.has_subscribers(key):
            # The asker's inbox subscription may still be on its way to this hub (it reaches the
            # broker, then every publisher): wait for it until the ask's deadline (at most
            # _ROUTE_WAIT s: the deadline comes from the wire), then give up. At most
            # max_pending_asks replies wait so: a flood of asks from inboxes nobody reads is dropped.
            if len(self._sending) >= hub.limits.max_pending_asks:
                self.replies_dropped += 1
                self._log.warning(
                    "ask-replies-held",
                    "hub {}: dropped a reply to an inbox not yet routed: {} replies wait already "
                    "({} dropped so far)",
                    hub.name,
                    len(self._sending),
                    self.replies_dropped,
                )
                return
            task = asyncio.get_running_loop().create_task(self._send_when_routed(hub, key, request, reply))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
            return
        if hub.publish(key, reply) == 0:
            self.unrouted += 1  # a remote hub skips a key nobody subscribes to: the asker is gone

    async def _send_when_routed(self, hub: Hub, key: Key, request: Request, reply: dict[str, Any]) -> None:
        try:
            wait = min(_ROUTE_WAIT, (request.deadline_ns - time.time_ns()) / 1e9)
            await hub.wait_for_subscribers(key, max(0.0, wait))
        except TimeoutError:
            self.unrouted += 1  # the asker is gone, or gave up
            return
        if hub.publish(key, reply) == 0:
            self.unrouted += 1

    def statistics(self) -> AskStatistics:
        table = self._table
        return AskStatistics(
            asked=self.asked,
            answered=self.answered,
            failed=self.failed,
            timeouts=self.timeouts,
            no_answerer=self.no_answerer,
            pending=len(table),
            late=table.late,
            duplicates=table.duplicates,
            unknown=table.unknown,
            malformed=self.malformed,
            requests_handled=self.requests_handled,
            answer_errors=self.answer_errors,
            expired=self.expired,
            replies_unrouted=self.unrouted,
            refused=self.refused,
            replies_waiting=len(self._sending),
            replies_dropped=self.replies_dropped,
        )


_STATES: weakref.WeakKeyDictionary[Hub, _AskState] = weakref.WeakKeyDictionary()


def _state(hub: Hub) -> _AskState:
    state = _STATES.get(hub)
    if state is None:
        state = _STATES[hub] = _AskState(hub)
    return state


async def ask(hub: Hub, key: PossibleKey, payload: Any, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Send ``payload`` to whoever answers ``key`` (an ``@answers`` handler) and return its answer.

    Raises :class:`NoAnswererError` at once when the hub knows nobody answers ``key``,
    :class:`AskTimeoutError` after ``timeout`` seconds without a reply, and :class:`AnswerError` when
    the answering handler raised. See :mod:`actors._ask` for the protocol.
    """
    if timeout <= 0:
        raise ValueError(f"ask timeout must be positive, got {timeout}")
    return await _state(hub).ask(key, payload, timeout)


def ask_statistics(hub: Hub) -> AskStatistics:
    """Request/reply counters of ``hub`` (all zero before its first ask or answer)."""
    return _state(hub).statistics()


def answering(
    hub: Hub, fn: Callable[[Key, Any], Any], is_async: bool, answerer: str
) -> Callable[[Key, Any], Any]:
    """Wrap an ``@answers`` method into a handler of ``('$ask', *pattern)`` messages that replies.

    The wrapper takes ``(wire key, request)`` like any handler; ``fn`` sees the asked key (without
    ``'$ask'``) and the request's payload. ``fn``'s exceptions become error replies.
    """
    state = _state(hub)

    if is_async:
        afn: Callable[[Key, Any], Awaitable[Any]] = fn

        @functools.wraps(fn)
        async def answer_async(key: Key, message: Any) -> None:
            request = state.accept(message)
            if request is None:
                return
            try:
                value = await afn(state.service_key(key), request.payload)
            except Exception as exc:
                state.fail(request, answerer, exc)
            else:
                state.reply(request, answerer, value)

        return answer_async

    @functools.wraps(fn)
    def answer(key: Key, message: Any) -> None:
        request = state.accept(message)
        if request is None:
            return
        try:
            value = fn(state.service_key(key), request.payload)
        except Exception as exc:
            state.fail(request, answerer, exc)
        else:
            state.reply(request, answerer, value)

    return answer
