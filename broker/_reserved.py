"""Every reserved key and the publisher-id format: the names the broker and every hub agree on.

Keys whose first segment starts with ``$`` are tickbus's own (:func:`broker.is_reserved`); a ``*``
pattern never matches them, so only a subscriber that names them receives them::

    ('$broker', 'stats')               the broker's statistics, every stats_interval
    ('$bus', 'hb', HUB)                a hub's heartbeat: liveness, and its streams' last sequences
    ('$bus', 'slow', HUB)              a hub that fell behind (and when it recovered)
    ('$sync', PUBLISHER_ID)            a hub's own probe: its subscriptions reached the broker
    ('$lvc', 'req')                    a snapshot request to the broker's last-value cache
    ('$lvc', 'snap', PUBLISHER_ID)     the cache's reply, to the asking hub's inbox
    ('$ask', *KEY)                     a request (``ask``) for whoever answers KEY
    ('$reply', PUBLISHER_ID)           the answer, to the asking hub's inbox
    ('$actors', 'hello'|'stats'|'bye', GROUP)   a ``tickbus run`` group's announcements
    ('$alerts', 'profile', ACTOR)      a profiling regression alert

A publisher id names one incarnation of a hub, ``name@host:pid:token``: ``token`` is random per
start, so a restarted publisher is a new publisher (never a sequence error), while ``name@host``
(its *identity*) stays the same across restarts. Build and read ids only through this module.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "ACTORS",
    "ALERTS_PROFILE",
    "ASK",
    "BROKER_STATS",
    "HEARTBEAT",
    "LVC_INBOX",
    "LVC_REQUEST",
    "PublisherId",
    "REPLY",
    "SLOW",
    "SYNC",
    "new_publisher_id",
    "parse_publisher_id",
    "publisher_identity",
]

BROKER_STATS = ("$broker", "stats")
HEARTBEAT = ("$bus", "hb")
SLOW = ("$bus", "slow")
SYNC = ("$sync",)
LVC_REQUEST = ("$lvc", "req")
LVC_INBOX = ("$lvc", "snap")
ASK = "$ask"
REPLY = "$reply"
ACTORS = "$actors"
ALERTS_PROFILE = ("$alerts", "profile")


class PublisherId(NamedTuple):
    """The parts of a publisher id ``name@host:pid:token``."""

    name: str
    host: str
    pid: int
    token: str

    @property
    def identity(self) -> str:
        """``name@host``: the same across the publisher's restarts."""
        return f"{self.name}@{self.host}"

    def __str__(self) -> str:
        return f"{self.name}@{self.host}:{self.pid}:{self.token}"


def instance_name(kind: str, endpoints: Sequence[str]) -> str:
    """``kind`` and the tail of the first endpoint (``broker-5550``, ``lvc-front``): two brokers of a
    pair on one host then have distinct identities (``name@host``), and a broker restarted on the
    same endpoints keeps its own (see ``actors.SequenceTracker``'s incarnations)."""
    tail = re.sub(r"[^A-Za-z0-9_.-]", "", re.split(r"[:/]", endpoints[0])[-1]) if endpoints else ""
    return f"{kind}-{tail[:32]}" if tail and tail != "*" else kind


def new_publisher_id(name: str) -> str:
    """A fresh publisher id for a hub named ``name`` in this process."""
    return str(PublisherId(name, socket.gethostname(), os.getpid(), secrets.token_hex(4)))


def parse_publisher_id(text: str) -> PublisherId | None:
    """The parts of ``text``, or ``None`` when it is not of the form ``name@host:pid:token``."""
    rest, sep, token = text.rpartition(":")
    identity, sep2, pid = rest.rpartition(":")
    name, at, host = identity.rpartition("@")
    if not (sep and sep2 and at and pid.isdigit() and pid.isascii()):
        return None
    return PublisherId(name, host, int(pid), token)


def publisher_identity(text: str) -> str:
    """``name@host`` of a publisher id, the same across restarts (``text`` itself if malformed)."""
    rest = text.rpartition(":")[0]
    return rest.rpartition(":")[0] or text
