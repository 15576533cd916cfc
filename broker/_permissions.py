"""Per-identity permissions: the ``permissions.toml`` format and the rules it describes. Socket-free.

Problem: CURVE and the allow-list (``broker._auth``) decide *who* may connect; once in, any client
could publish any key, subscribe to anything (other hubs' reply inboxes included), send headers under
another hub's publisher id and answer anyone's ``ask``. Approach: one TOML table per allow-listed key
(the key file's stem, ``allowed/feed.key`` is ``[identities.feed]``) says what that identity may do;
the broker's checked forwarder (``broker._checked``) asks the :class:`Rules` here per message and per
subscription. Everything is denied unless granted; an allow-listed key without a table may connect
but do nothing (a warning at start names it).

The file::

    [identities.feed]
    publishers = ["feed@host-a"]   # name@host of its hubs' publisher ids; '*' globs ("feed@*")
    publish = ["md.*"]             # key patterns it may publish (dotted, as `tickbus broker --lvc`)
    subscribe = ["orders.*"]       # key prefixes it may subscribe to ("*": every non-reserved key)
    ask = ["risk.check"]           # keys it may ask (actors' ask)
    answers = ["risk.*"]           # keys it may answer (actors' @answers), and so reply to
    reserved = false               # true: its publish/subscribe lists may name '$' keys

Every hub also gets, without a line, the plumbing it needs for *its own* publisher ids: publishing its
heartbeat and slow notices ``('$bus', 'hb'|'slow', NAME)`` with NAME its header's hub name and its
sync probes ``('$sync', ID)``; subscribing to every heartbeat (``('$bus', 'hb')``) and to its own
inboxes ``('$sync', ID)``, ``('$reply', ID)`` and ``('$lvc', 'snap', ID)`` (ID one of its own publisher
ids). The broker's own keys (``$broker``, ``('$lvc', 'snap')``) are never granted to a client.

Limits: a subscribe entry names a prefix (a ``'*'`` may only end it); keys with a '.' inside a segment
cannot be written in this dotted form.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from observability import BrokerConfigError

from ._keys import RESERVED_PREFIX, WILDCARD, encode_key, matches, subscription_prefix
from ._reserved import (
    ASK,
    BROKER_STATS,
    HEARTBEAT,
    LVC_INBOX,
    LVC_REQUEST,
    REPLY,
    SLOW,
    SYNC,
    parse_publisher_id,
)

FIELDS = ("publishers", "publish", "subscribe", "ask", "answers", "reserved")
_LISTS = FIELDS[:-1]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as broker._curve's key names
# first segments (or first two) whose keys only the broker or the ask/snapshot checks may grant
_BROKER_ONLY = (BROKER_STATS[0], REPLY, SYNC[0], ASK, LVC_REQUEST[0])
_HEARTBEAT_PREFIX = encode_key(HEARTBEAT)
_MAX_PATTERNS = 1024  # per list: the checks loop over them
MAX_PERMISSIONS_FILE = 1 << 20  # bytes: a larger file is refused (it is parsed on the forwarding thread)


def parse_pattern(text: str) -> tuple[str, ...]:
    """``'md.*'`` -> ``('md', '*')``; :class:`ValueError` for an empty segment."""
    parts = tuple(text.split("."))
    if not text or not all(parts):
        raise ValueError(f"{text!r} is not a dotted key pattern such as 'md.*' (empty segment)")
    return parts


@dataclass(frozen=True, slots=True)
class Rules:
    """What one identity may do (one ``[identities.NAME]`` table)."""

    name: str
    publishers: tuple[str, ...] = ()
    publish: tuple[tuple[str, ...], ...] = ()
    subscribe: tuple[bytes, ...] = ()  # wire prefixes (heads of the subscribe patterns)
    subscribe_all: bool = False  # "*" is in subscribe: every non-reserved prefix
    ask: tuple[tuple[str, ...], ...] = ()
    answers: tuple[tuple[str, ...], ...] = ()
    reserved: bool = False

    # -- publisher ids ------------------------------------------------------------------------
    def owns_identity(self, identity: str) -> bool:
        """True when ``name@host`` matches one of :attr:`publishers` (``*`` globs)."""
        return any(fnmatch.fnmatchcase(identity, p) for p in self.publishers)

    def owns(self, publisher_id: str) -> bool:
        """True when ``publisher_id`` (``name@host:pid:token``) is one of this identity's."""
        parsed = parse_publisher_id(publisher_id)
        return parsed is not None and self.owns_identity(parsed.identity)

    # -- publishing ---------------------------------------------------------------------------
    def may_publish(self, key: tuple[str, ...]) -> bool:
        """True when ``key`` (not a plumbing key, see :func:`plumbing_kind`) matches :attr:`publish`."""
        if key and key[0].startswith(RESERVED_PREFIX) and not self.reserved:
            return False
        return any(matches(key, p) for p in self.publish)

    def may_ask(self, key: tuple[str, ...]) -> bool:
        """True when an ``ask`` for ``key`` may be sent (``key`` without the ``$ask`` segment)."""
        return any(matches(key, p) for p in self.ask)

    def may_answer(self, key: tuple[str, ...]) -> bool:
        """True when this identity may answer (and so reply to) an ``ask`` for ``key``."""
        return any(matches(key, p) for p in self.answers)

    # -- subscribing --------------------------------------------------------------------------
    def may_subscribe(self, prefix: bytes) -> bool:
        """True when this identity may subscribe to the wire ``prefix``."""
        if not prefix:  # the empty prefix receives everything, reserved keys included
            return self.subscribe_all and self.reserved
        if prefix.startswith(_RESERVED):
            return self._may_subscribe_reserved(prefix)
        return self.subscribe_all or any(prefix.startswith(head) for head in self.subscribe)

    def _may_subscribe_reserved(self, prefix: bytes) -> bool:
        if prefix.startswith(_HEARTBEAT_PREFIX):
            return True
        inbox = _inbox_of(prefix)
        if inbox is not None:
            return self.owns(inbox)
        if prefix.startswith(_ASK_PREFIX):
            return any(prefix.startswith(h) for h in self._answer_heads())
        return self.reserved and any(prefix.startswith(head) for head in self.subscribe)

    def _answer_heads(self) -> tuple[bytes, ...]:
        return tuple(subscription_prefix((ASK, *p)) for p in self.answers)


_RESERVED = RESERVED_PREFIX.encode()
_ASK_PREFIX = encode_key((ASK,))
_INBOXES = tuple(encode_key(k) for k in (SYNC, (REPLY,), LVC_INBOX))


def _inbox_of(prefix: bytes) -> str | None:
    """The publisher id of an exact inbox prefix (``$sync``, ``$reply``, ``$lvc.snap``), else None."""
    for head in _INBOXES:
        if prefix.startswith(head):
            rest = prefix[len(head) :]
            if rest.count(b"\x00") == 1 and rest.endswith(b"\x00") and len(rest) > 1:
                return rest[:-1].decode(errors="replace")
            return ""  # a partial or wider inbox prefix: nobody's own
    return None


_PLUMBING: dict[tuple[str, int], str] = {
    (SYNC[0], 2): "sync",
    (REPLY, 2): "reply",
}


def plumbing_kind(key: tuple[str, ...]) -> str | None:
    """Which built-in check governs publishing ``key``: ``'heartbeat'``, ``'sync'``, ``'ask'``,
    ``'reply'``, ``'snapshot'``, ``'broker'`` (never a client's), or None (the publish patterns)."""
    if not key or not key[0].startswith(RESERVED_PREFIX):
        return None
    first = key[0]
    kind: str | None = _PLUMBING.get((first, len(key)))
    if kind is None:
        if first == HEARTBEAT[0]:
            kind = "heartbeat" if len(key) == 3 and key[1] in (HEARTBEAT[1], SLOW[1]) else None
        elif first == ASK and len(key) > 1:
            kind = "ask"
        elif key == LVC_REQUEST:
            kind = "snapshot"
        elif first in _BROKER_ONLY:
            kind = "broker"
    return kind


class Permissions:
    """Every identity's :class:`Rules`, loaded from one file; :meth:`rules` is None for strangers."""

    def __init__(self, rules: Mapping[str, Rules], path: str = "<memory>") -> None:
        self._rules = dict(rules)
        self.path = path

    def rules(self, identity: str) -> Rules | None:
        """The rules of ``identity`` (a key file's stem), None when the file has no table for it."""
        return self._rules.get(identity)

    @property
    def identities(self) -> tuple[str, ...]:
        """The identities the file names, sorted."""
        return tuple(sorted(self._rules))

    @classmethod
    def load(cls, path: str | Path) -> Permissions:
        """Read and validate a permissions file; :class:`BrokerConfigError` naming file, table, field."""
        where = str(path)
        try:
            # O_NONBLOCK: opening a FIFO put at this path returns at once instead of stopping the
            # forwarding thread (which reloads the file) until someone writes to it
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise BrokerConfigError(f"broker permissions file {where} is not a regular file")
                if info.st_size > MAX_PERMISSIONS_FILE:
                    raise BrokerConfigError(
                        f"broker permissions file {where} has {info.st_size} bytes; at most "
                        f"{MAX_PERMISSIONS_FILE} are read"
                    )
                document = tomllib.loads(handle.read(MAX_PERMISSIONS_FILE + 1).decode("utf-8"))
        except FileNotFoundError:
            raise BrokerConfigError(
                f"broker permissions file {where}: no such file; write one (see README, "
                "'Limits and permissions') or drop --permissions"
            ) from None
        except OSError as exc:
            raise BrokerConfigError(f"broker permissions file {where}: cannot be read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise BrokerConfigError(f"broker permissions file {where} is not valid TOML: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise BrokerConfigError(f"broker permissions file {where} is not UTF-8 text: {exc}") from exc
        return cls(parse_document(document, where), where)


def parse_document(document: Mapping[str, object], where: str) -> dict[str, Rules]:
    """The rules of a parsed permissions document (``where`` names it in errors)."""
    extra = sorted(set(document) - {"identities"})
    if extra:
        raise BrokerConfigError(
            f"broker permissions file {where}: unknown table [{extra[0]}]; only [identities.NAME] tables"
        )
    tables = document.get("identities", {})
    if not isinstance(tables, dict) or not tables:
        raise BrokerConfigError(
            f"broker permissions file {where} has no [identities.NAME] table; add one per key in the "
            "allow-list directory (NAME.key)"
        )
    return {name: parse_table(name, table, where) for name, table in tables.items()}


def parse_table(name: str, table: object, where: str) -> Rules:
    """One ``[identities.NAME]`` table as :class:`Rules`."""
    at = f"broker permissions file {where}, table [identities.{name}]"
    if not _NAME.match(name):
        raise BrokerConfigError(f"{at}: {name!r} is not a key name (letters, digits, '_', '.', '-')")
    if not isinstance(table, dict):
        raise BrokerConfigError(f"{at} is not a table")
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise BrokerConfigError(f"{at}: unknown field {unknown[0]!r}; allowed: {', '.join(FIELDS)}")
    reserved = table.get("reserved", False)
    if not isinstance(reserved, bool):
        raise BrokerConfigError(f"{at}, field 'reserved' = {reserved!r}: must be true or false")
    lists: dict[str, tuple[str, ...]] = {}
    for field in _LISTS:
        value = table.get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise BrokerConfigError(f"{at}, field {field!r} = {value!r}: must be a list of strings")
        if len(value) > _MAX_PATTERNS:
            raise BrokerConfigError(f"{at}, field {field!r}: more than {_MAX_PATTERNS} entries")
        lists[field] = tuple(value)
    for identity in lists["publishers"]:
        if "@" not in identity or ":" in identity:
            raise BrokerConfigError(
                f"{at}, field 'publishers': {identity!r} is not a name@host pattern (e.g. 'feed@host-a', "
                "'feed@*'); publisher ids are name@host:pid:token and the pid and token change per start"
            )

    def patterns(field: str) -> tuple[tuple[str, ...], ...]:
        out = []
        for text in lists[field]:
            try:
                pattern = parse_pattern(text)
            except ValueError as exc:
                raise BrokerConfigError(f"{at}, field {field!r}: {exc}") from None
            out.append(pattern)
        return tuple(out)

    publish, subscribe = patterns("publish"), patterns("subscribe")
    for field, group in (("publish", publish), ("subscribe", subscribe)):
        for pattern in group:
            if pattern[0].startswith(RESERVED_PREFIX) and not reserved:
                raise BrokerConfigError(
                    f"{at}, field {field!r}: {'.'.join(pattern)!r} is a reserved key; set reserved = true "
                    "to grant it (a hub's own plumbing needs no entry)"
                )
    for pattern in publish:
        if plumbing_kind(pattern) not in (None, "heartbeat") or pattern[0] == BROKER_STATS[0]:
            raise BrokerConfigError(
                f"{at}, field 'publish': {'.'.join(pattern)!r} is granted by the broker itself "
                "(use 'ask' and 'answers' for requests and replies; $broker and $lvc are the broker's)"
            )
    for pattern in subscribe:
        if WILDCARD in pattern[:-1]:
            raise BrokerConfigError(
                f"{at}, field 'subscribe': {'.'.join(pattern)!r} has a '*' before its end; a subscribe "
                "entry is a key prefix ('md.*', 'md.AAPL')"
            )
    heads = tuple(sorted({subscription_prefix(p) for p in subscribe if p != (WILDCARD,)}))
    return Rules(
        name=name,
        publishers=lists["publishers"],
        publish=publish,
        subscribe=heads,
        subscribe_all=(WILDCARD,) in subscribe,
        ask=patterns("ask"),
        answers=patterns("answers"),
        reserved=reserved,
    )
