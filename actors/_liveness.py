"""Liveness and lag, socket-free: publisher heartbeats, publishers gone quiet, slow consumers.

Problem: pub/sub is at-most-once, and a subscriber must tell "quiet" from "gone", count the messages
lost at the very end of a stream (no later message shows the hole), and know when it has fallen
behind. None of this may cost anything per message.

Approach:

- **Heartbeats** (:class:`HeartbeatSchedule`, publisher side). Every hub that has published sends one
  message per ``interval`` on ``('$bus', 'hb', <hub name>)``. Every remote hub subscribes to that
  prefix and handles heartbeats before sequence tracking (they are control traffic, not a stream).
  Once a publisher has been idle for a whole interval, its heartbeats carry ``[wire key, seq]`` of
  every key whose sequence moved while it was busy, in three heartbeats in a row; the heartbeats 4, 8
  and 16 intervals into the idle spell, then every 16th for as long as it stays idle, carry the latest
  sequence of every key it ever published (the 20,000 that moved last). A subscriber tracking such a
  stream counts the numbers it never saw as gaps (:meth:`actors._sequence.SequenceTracker.catch_up`).
  The report keeps coming because the heartbeats that carry it queue behind the data: behind a full
  queue to a slow subscriber they are dropped with it, and only a report sent after the backlog
  drained reaches it (at most 16 intervals later). A busy publisher's heartbeats are empty: they
  only say "alive".
- **Gone** (:class:`PublisherLiveness`, subscriber side): a publisher whose heartbeats stopped for
  ``misses`` of its own intervals is reported gone once (log, statistics), and back when heard again.
  Connection-level silence (a dead broker or a cut link) is ZeroMQ's ZMTP heartbeat: see ``connect``.
- **Left** (a publisher that announces its departure): a closing hub's last heartbeat carries
  ``"bye": true`` and the latest sequence of every key (:meth:`HeartbeatSchedule.farewell`); a
  subscriber counts the tail it missed and forgets the publisher, at INFO (:meth:`HubWatch.heard`),
  where a publisher that stops without notice is reported gone, a WARNING. Older hubs ignore the
  field. (Sending it on close and passing the flag from ``Inbound`` are the remote hub's part.)
- **Slow consumers** (:class:`LagMonitor`): ten times a second the hub compares the send time of
  the oldest message it processed since the last check with the clock (the first of each interval:
  a backlog drained between two checks is still seen). Same host: monotonic clocks, exact; other hosts:
  wall clocks, as good as NTP. Beyond ``slow_after`` seconds the hub flags itself slow (statistics,
  one log line, an event on ``('$bus', 'slow', <hub name>)``), and recovered below half of it. The
  broker never waits for a slow subscriber: its queue to that subscriber overflows and the messages
  dropped there come back as gaps, counted by sequence.
- **Only a backlog here makes a hub slow.** A send time is the sender's word: a peer that stamps its
  messages seconds old (a clock behind, or made up, within ``max_message_age``) would flag any hub
  that subscribes, and a slow hub stops reporting publishers gone. So an old sample flags the hub
  only when the hub itself shows it is behind: in the last two check intervals a reading slice ended
  with messages still waiting, reading was held for a full queue, or the hub's own timer ran
  ``slow_after / 2`` late (a stalled loop). Otherwise it is counted (``unconfirmed``) and the flag
  stays down (or comes down). The hub keeps those signals; :class:`LagMonitor` is told ``behind``.

Untrusted heartbeats: any peer can send one under a made-up publisher id. The table of publishers
watched holds at most ``max_publishers`` (10,000; the least recently heard goes first, counted in
``PublisherLiveness.evicted``), and a heartbeat whose interval is not a finite number of seconds
above 0 and at most ``max_interval`` (1 h) is refused: :func:`parse_heartbeat` raises (the hub counts
it as malformed, ``heartbeat``) and :meth:`PublisherLiveness.heard` ignores it (``refused``).

Limits: lag is measured on messages this hub processed, so a hub stopped outright (SIGSTOP, a blocked
loop) flags itself when it runs again, not while stopped; the broker and its other subscribers carry
on regardless. Tail losses are counted only for streams the subscriber had already seen.
"""

from __future__ import annotations

import itertools
import math
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

from broker import FIXED, FORMAT_VERSION, HEARTBEAT, KEY_END, encode_key, parse_publisher_id
from observability import RateLimitedLog

from ._limits import ClockSkew
from ._sequence import SequenceTracker

HEARTBEAT_PREFIX = encode_key(HEARTBEAT)
_IN_A_ROW = 3  # idle heartbeats that carry the report one after another
_SPACING = 16  # ... then every 16th, for as long as the publisher stays idle
_MAX_ENTRIES = 20_000  # keys in one idle report (the ones that moved longest ago go first)
HEARTBEAT_CONTAINERS = _MAX_ENTRIES + 2
"""Arrays and maps in the largest heartbeat a hub sends (its map, its list, one per entry): a
receiver decodes heartbeats under this bound, so one larger costs no more than the largest real one."""
_HOST = socket.gethostname()
DEFAULT_MAX_PUBLISHERS = 10_000  # publishers a subscriber watches (as many as it tracks sequences of)
DEFAULT_MAX_INTERVAL = 3600.0  # seconds: the longest heartbeat interval a subscriber accepts


class HeartbeatSchedule:
    """When to send a heartbeat and what it says (publisher side)."""

    __slots__ = ("_due", "_fresh", "_idle_beats", "_last_published", "_pending", "_report", "interval")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._due = 0.0
        self._last_published = 0
        self._pending = False  # published since the report was last rebuilt
        self._report: dict[bytes, int] = {}  # latest seq of every key that moved (bounded)
        self._fresh: list[list[Any]] = []  # the keys that moved during the last busy spell
        self._idle_beats = 0  # idle heartbeats since the report was rebuilt

    def due(self, now: float, published: int) -> bool:
        """True when a heartbeat should go now; ``published`` counts data messages sent so far."""
        return published > 0 and self.interval > 0 and now >= self._due

    def next_payload(
        self, now: float, published: int, streams: Iterable[tuple[bytes, int]]
    ) -> dict[str, Any]:
        """The payload of the heartbeat due now; ``streams`` yields (wire key, seq) of every key."""
        self._due = now + self.interval
        busy = published != self._last_published
        self._last_published = published
        if busy:
            self._pending = True
            return {"i": self.interval, "k": []}
        if self._pending:  # first idle heartbeat after traffic: what moved joins the report
            self._pending = False
            report = self._report
            moved = [(kb, seq) for kb, seq in streams if report.get(kb) != seq]
            for kb, seq in moved:
                report.pop(kb, None)  # re-inserted last: the newest movers lead the report
                report[kb] = seq
            if len(report) > _MAX_ENTRIES:  # bounded: the keys that moved longest ago go
                for kb in list(itertools.islice(report, len(report) - _MAX_ENTRIES)):
                    del report[kb]
            self._fresh = [[kb, seq] for kb, seq in moved[-_MAX_ENTRIES:]]
            self._idle_beats = 0
        beat = self._idle_beats
        self._idle_beats += 1
        if beat < _IN_A_ROW:  # what just moved, three times
            return {"i": self.interval, "k": self._fresh}
        if beat & (beat - 1) == 0 or beat % _SPACING == 0:  # everything, 4, 8, 16, 32, 48... beats in
            return {"i": self.interval, "k": [[kb, seq] for kb, seq in self._report.items()]}
        return {"i": self.interval, "k": []}

    def restart(self) -> None:
        """Forget what was reported: every key is numbered afresh, under a new publisher id."""
        self._pending = False
        self._report.clear()
        self._fresh = []
        self._idle_beats = 0

    def farewell(self, streams: Iterable[tuple[bytes, int]]) -> dict[str, Any]:
        """The payload of the last heartbeat of a hub that closes: "bye", and every key's latest seq."""
        report = dict(self._report)
        report.update(streams)
        entries = list(report.items())[-_MAX_ENTRIES:]
        return {"i": self.interval, "k": [[kb, seq] for kb, seq in entries], "bye": True}


def is_farewell(payload: Any) -> bool:
    """True for the last heartbeat of a publisher that announced its departure."""
    return isinstance(payload, dict) and payload.get("bye") is True


def _valid_interval(interval: object, max_interval: float) -> TypeGuard[float]:
    return (
        isinstance(interval, int | float)
        and not isinstance(interval, bool)
        and 0 < interval <= max_interval  # False for NaN; first, so that no huge int meets isfinite
        and math.isfinite(interval)
    )


def parse_heartbeat(
    payload: Any, max_interval: float = DEFAULT_MAX_INTERVAL
) -> tuple[float, list[tuple[bytes, int]]]:
    """``(interval, [(wire key, seq), ...])`` from a heartbeat payload; ``ValueError`` if malformed.

    The interval must be a finite number of seconds, above 0 and at most ``max_interval``.
    """
    if not isinstance(payload, dict):
        raise ValueError("heartbeat payload is not a map")
    interval, entries = payload.get("i"), payload.get("k")
    if not _valid_interval(interval, max_interval) or not isinstance(entries, list):
        raise ValueError(f"heartbeat payload lacks an interval 'i' in (0, {max_interval:g}] s or a list 'k'")
    out: list[tuple[bytes, int]] = []
    for entry in entries:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not isinstance(entry[0], bytes)
            or type(entry[1]) is not int
            or entry[1] < 0
        ):
            raise ValueError(f"heartbeat entry {entry!r:.60} is not [wire key, seq]")
        out.append((entry[0], entry[1]))
    return float(interval), out


@dataclass
class _Peer:
    interval: float
    heard: float
    gone: bool = False


class PublisherLiveness:
    """Which publishers are alive, from their heartbeats (subscriber side).

    Bounded by configuration: at most ``max_publishers`` watched (the least recently heard is
    forgotten, ``evicted``), heartbeat intervals at most ``max_interval`` seconds (others ``refused``).
    """

    def __init__(
        self,
        *,
        misses: int = 3,
        max_publishers: int = DEFAULT_MAX_PUBLISHERS,
        max_interval: float = DEFAULT_MAX_INTERVAL,
    ) -> None:
        if max_publishers < 1:
            raise ValueError(f"max_publishers must be >= 1, got {max_publishers}")
        self._misses = misses
        self._max_publishers = max_publishers
        self._max_interval = max_interval
        self._peers: dict[str, _Peer] = {}  # in order of the last heartbeat: least recent first
        self.gone_events = 0
        self.evicted = 0  # publishers forgotten to stay within max_publishers
        self.refused = 0  # heartbeats ignored: interval not finite, not positive or over max_interval

    def heard(self, publisher: str, interval: float, now: float) -> bool:
        """Record a heartbeat; True when the publisher was gone and is back."""
        if not _valid_interval(interval, self._max_interval):
            self.refused += 1
            return False
        peer = self._peers.pop(publisher, None)  # re-inserted last: the order is recency
        if peer is None:
            if len(self._peers) >= self._max_publishers:
                del self._peers[next(iter(self._peers))]
                self.evicted += 1
            self._peers[publisher] = _Peer(interval, now)
            return False
        self._peers[publisher] = peer
        peer.interval, peer.heard = interval, now
        back, peer.gone = peer.gone, False
        return back

    def check(self, now: float) -> list[tuple[str, float]]:
        """Publishers newly gone, with seconds since last heard; forgets those gone for an hour."""
        newly: list[tuple[str, float]] = []
        for publisher, peer in list(self._peers.items()):
            silent = now - peer.heard
            if not peer.gone and silent > peer.interval * self._misses:
                peer.gone = True
                self.gone_events += 1
                newly.append((publisher, silent))
            elif peer.gone and silent > 3600.0:
                del self._peers[publisher]
        return newly

    def forget(self, publisher: str) -> None:
        """Stop watching one publisher (it said goodbye)."""
        self._peers.pop(publisher, None)

    @property
    def live(self) -> int:
        """Publishers heard from within their deadline."""
        return sum(1 for p in self._peers.values() if not p.gone)

    @property
    def gone(self) -> int:
        """Publishers reported gone and not heard from since."""
        return sum(1 for p in self._peers.values() if p.gone)


class LagMonitor:
    """Flags a hub slow when the messages it processes are older than ``slow_after`` seconds."""

    __slots__ = ("episodes", "lag", "skew", "slow", "slow_after", "unconfirmed")

    def __init__(self, slow_after: float, skew: ClockSkew | None = None) -> None:
        self.slow_after = slow_after
        self.slow = False
        self.episodes = 0
        self.unconfirmed = 0  # old samples while the hub was not behind: not a reason to flag it
        self.lag = 0.0
        self.skew = skew if skew is not None else ClockSkew()  # the hub's, so that it counts `skewed`

    def frame_age(self, frame: bytes, mono_ns: int, wall_ns: int) -> float | None:
        """Seconds since a received frame (format 2, undecoded) was sent, by its header, as
        :meth:`check` reads a header; None when it says nothing (not a tickbus frame of this
        version, or an implausible send time: counted in the skew's ``skewed``)."""
        end = frame.find(KEY_END)
        start = end + 1 + FIXED.size
        if end < 0 or len(frame) < start:
            return None
        version, _flags, length, _seq, mono, wall = FIXED.unpack_from(frame, end + 1)
        if version != FORMAT_VERSION:
            return None
        publisher = frame[start : start + length].decode("utf-8", "replace")
        return self._age(publisher, mono, wall, mono_ns, wall_ns)

    def _age(
        self, publisher: str, sent_mono: int, sent_wall: int, mono_ns: int, wall_ns: int
    ) -> float | None:
        """Seconds since a message of ``publisher`` was sent: by the monotonic clocks on this host,
        else by the wall clocks; None for an implausible send time (counted in ``skewed``)."""
        parsed = parse_publisher_id(publisher)
        if parsed is not None and parsed.host == _HOST:
            age = self.skew.age_ns(mono_ns, sent_mono)
        else:
            age = self.skew.age_ns(wall_ns, sent_wall)
        return None if age is None else max(0.0, age / 1e9)

    def check(self, header: Any, mono_ns: int, wall_ns: int, behind: bool) -> str | None:
        """Update from the oldest header processed since the last check (``None``: nothing processed).

        ``behind``: whether the hub saw a backlog of its own since the check before last (see the
        module doc); without one an old sample is counted in :attr:`unconfirmed` and flags nothing.
        Returns ``"slow"``/``"recovered"`` on a change, else None.
        """
        if header is None:
            self.lag = 0.0  # nothing new processed: idle (a stopped hub does not get here)
        else:
            age = self._age(header.publisher, header.mono_ns, header.wall_ns, mono_ns, wall_ns)
            if age is None:  # an implausible send time (0, far future or past) says nothing of us
                return None
            self.lag = age
        if self.slow_after <= 0:
            return None
        if not self.slow and self.lag > self.slow_after:
            if not behind:  # the sender's word alone
                self.unconfirmed += 1
                return None
            self.slow = True
            self.episodes += 1
            return "slow"
        if self.slow and (self.lag < self.slow_after / 2 or not behind):
            self.slow = False
            return "recovered"
        return None


class HubWatch:
    """A remote hub's view of its publishers and of itself, run from the hub's periodic sweep."""

    def __init__(
        self,
        name: str,
        publisher_id: str,
        *,
        idle_heartbeat: float,
        slow_after: float,
        log: RateLimitedLog,
        max_publishers: int = DEFAULT_MAX_PUBLISHERS,
        max_heartbeat_interval: float = DEFAULT_MAX_INTERVAL,
    ) -> None:
        self.name, self.publisher_id = name, publisher_id
        self.schedule = HeartbeatSchedule(idle_heartbeat)
        # when the hub last showed a backlog of its own (monotonic seconds), set by the hub: a reading
        # slice out of time with messages waiting, a queue full, its timer late by slow_after / 2
        self.backlog_at = -math.inf
        self._lag_checked = (0.0, 0.0)  # the last two lag checks' times
        self.liveness = PublisherLiveness(max_publishers=max_publishers, max_interval=max_heartbeat_interval)
        self.lag = LagMonitor(slow_after)
        self._log = log
        self._incarnations_logged = 0

    def heard(self, publisher: str, interval: float, farewell: bool = False) -> None:
        """A heartbeat arrived (``Inbound.on_heartbeat``); ``farewell``: its publisher is leaving."""
        if farewell:
            self.liveness.forget(publisher)
            self._log.log("INFO", "publisher-left", "hub {}: publisher {} left", self.name, publisher)
        elif self.liveness.heard(publisher, interval, time.monotonic()):
            self._log.log("INFO", "publisher-back", "hub {}: publisher {} is back", self.name, publisher)

    def check_liveness(self, now: float, tracker: SequenceTracker) -> None:
        """Log publishers newly gone, and publishers that restarted.

        Not while this hub is itself slow: its heartbeats wait behind the backlog it is working
        through, so silence is no evidence (a publisher that really died is reported once caught up).
        """
        gone = [] if self.lag.slow else self.liveness.check(now)
        for publisher, silent in gone:
            self._log.warning(  # it stopped without a farewell: crashed, hung, or cut off
                "publisher-gone",
                "hub {}: publisher {} gone: no heartbeat for {:.1f} s",
                self.name,
                publisher,
                silent,
            )
        if tracker.incarnations != self._incarnations_logged and tracker.last_incarnation is not None:
            self._incarnations_logged = tracker.incarnations
            old, new = tracker.last_incarnation
            self._log.log("INFO", "incarnation", "hub {}: publisher {} restarted as {}", self.name, old, new)

    def check_lag(self, oldest: Any, gaps: int, now: float, *, held: bool = False) -> dict[str, Any] | None:
        """Update the slow flag from the oldest header processed since the last check (``now``: the
        monotonic time in seconds), confirmed by a backlog of the hub's own: :attr:`backlog_at` since
        the check before last (the message that waited may be read just after the sweep that saw the
        stall), or reading ``held`` for a full queue right now (see :meth:`LagMonitor.check`).

        Returns the event to publish on ``('$bus', 'slow', <hub>)`` when the flag changes, else None.
        """
        behind = held or self.backlog_at >= self._lag_checked[0]
        self._lag_checked = (self._lag_checked[1], now)
        change = self.lag.check(oldest, time.monotonic_ns(), time.time_ns(), behind)
        if change is None:
            return None
        lag = self.lag
        if change == "slow":
            self._log.warning(
                "slow",
                "hub {}: slow consumer: processing messages {:.2f} s old (bound {} s); {} gaps so far",
                self.name,
                lag.lag,
                lag.slow_after,
                gaps,
            )
        else:
            self._log.log("INFO", "recovered", "hub {}: caught up (lag {:.3f} s)", self.name, lag.lag)
        return {
            "hub": self.name,
            "publisher_id": self.publisher_id,
            "lag_seconds": lag.lag,
            "gaps": gaps,
            "state": change,
        }
