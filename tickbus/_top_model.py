"""The model behind ``tickbus top``: the bus's own statistics messages folded into rows, socket-free.

Problem: every second the broker publishes its counters on ``('$broker', 'stats')`` and every
``tickbus run`` group its hub's and actors' on ``('$actors', 'stats', GROUP)``; hubs announce slow
episodes on ``('$bus', 'slow', HUB)``, the profiling collector regressions on ``('$alerts', 'profile',
ACTOR)``. All counters run since their process started.

Approach: :class:`BusModel` keeps the last two reports of each source and turns counter differences
into rates over the time between them (the broker's own ``uptime_s``, else the receive times given
as ``now``), and histogram differences (``timing`` buckets) into percentiles of that last interval.
A counter that went down, or a new pid, is a restart: no rate for that interval.

Limits: rates and percentiles describe the last reporting interval only (about a second); a group
that stops reporting is marked stale after :data:`STALE_AFTER` seconds and its rates drop to 0.
Anyone on the bus may publish on these keys, so every table has a fixed size (``_MAX_*``): a row
that would not fit is dropped and counted in :attr:`BusModel.ignored`, as is a malformed message.
Values are type-checked when they arrive; the view draws only checked fields.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._top_rows import (
    MAX_TEXT,
    ActorRow,
    AlertRow,
    BrokerRow,
    GroupRow,
    SlowNotice,
    buckets_of,
    float_of,
    int_of,
    number_of,
    percentile,
    rate,
    text_of,
    window,
)

STALE_AFTER = 3.5
"""Seconds without a group's statistics (published every second) before its rows show ``stale``."""

SORT_KEYS = ("group", "in/s", "out/s", "handler p99", "latency p99", "dropped", "queued")
"""The columns the actor rows can be sorted by, in the order ``s`` cycles through them."""


# Table sizes. Anyone may publish on the keys `top` reads: a row that does not fit is not kept
# (counted in BusModel.ignored), so what a peer sends never grows this view's memory past these.
_MAX_BROKERS = 16  # broker rows kept (a pair is 2)
_MAX_GROUPS = 500  # group rows (and their previous reports)
_MAX_ACTORS = 2_000  # actor rows, all groups together
_MAX_SLOW = 500  # hubs with a slow episode
_MAX_ALERTS = 1_000  # active profile alerts
_MAX_NAME = 512  # characters kept of an actor or group name in a payload (a key's own are bounded)


@dataclass
class _Previous:
    at: float
    pid: int
    hub: dict[str, int]
    actors: dict[str, dict[str, int]]
    timing: dict[str, dict[str, dict[int, int]]]


class BusModel:
    """Folds the bus's statistics messages into broker, group, actor, slow-consumer and alert rows."""

    def __init__(self) -> None:
        self.brokers: dict[str, BrokerRow] = {}
        """One row per broker (a pair shows two), by its endpoints."""
        self.groups: dict[str, GroupRow] = {}
        self.actors: dict[tuple[str, str], ActorRow] = {}
        self.slow: dict[str, SlowNotice] = {}
        """Hubs that announced a slow episode and no recovery since: hub name -> the notice."""
        self.alerts: dict[tuple[str, str, str], AlertRow] = {}
        """Active profile alerts: (group, actor, function) -> the alert."""
        self.messages = 0
        self.ignored = 0
        """Messages malformed or of no interest, and rows not kept because their table was full."""
        self._broker_before: dict[str, tuple[float, int, int]] = {}
        self._before: dict[str, _Previous] = {}

    # -- input ------------------------------------------------------------------------------------
    def on_message(self, key: Sequence[str], payload: Any, now: float) -> None:
        """Take one message of a key ``tickbus top`` subscribes to; ``now`` is a monotonic time in s."""
        self.messages += 1
        if not isinstance(payload, Mapping):
            self.ignored += 1
            return
        try:
            self._dispatch(key, payload, now)
        except (TypeError, ValueError, AttributeError, KeyError):  # a peer's odd payload never stops the view
            self.ignored += 1

    def _dispatch(self, key: Sequence[str], payload: Mapping[str, Any], now: float) -> None:
        head = tuple(key[:2])
        if head == ("$broker", "stats"):
            self.broker_stats(payload, now)
        elif len(key) >= 3 and key[0] == "$actors" and key[1] == "stats":
            self.group_stats(key[2], payload, now)
        elif len(key) >= 3 and key[0] == "$actors" and key[1] == "hello":
            self.group_hello(key[2], payload, now)
        elif len(key) >= 3 and key[0] == "$actors" and key[1] == "bye":
            self.group_bye(key[2])
        elif len(key) >= 3 and head == ("$bus", "slow"):
            self.slow_notice(key[2], payload)
        elif head == ("$alerts", "profile"):
            self.alert(payload)
        else:
            self.ignored += 1

    def broker_stats(self, p: Mapping[str, Any], now: float) -> None:
        """A ``('$broker', 'stats')`` payload (``broker.BrokerStatistics`` plus the endpoints)."""
        uptime = float_of(p, "uptime_s")
        forwarded, bytes_out = int_of(p, "messages_forwarded"), int_of(p, "bytes_out")
        row = BrokerRow(
            uptime_s=uptime,
            messages_forwarded=forwarded,
            bytes_out=bytes_out,
            publishers=int_of(p, "publishers"),
            subscribers=int_of(p, "subscribers"),
            subscriptions=int_of(p, "subscriptions"),
            refused=int_of(p, "refused"),
            denied=sum(
                n
                for kinds in (p.get("denied") or {}).values()
                if isinstance(kinds, Mapping)
                for n in kinds.values()
                if type(n) is int
            ),
            endpoints=[str(e) for e in [*(p.get("frontend") or []), *(p.get("backend") or [])]],
            last_seen=now,
        )
        name = " ".join(row.endpoints)
        before = self._broker_before.get(name)
        if before is not None and before[0] <= uptime:  # (a restarted broker's uptime starts again)
            then, fwd_before, bytes_before = before
            row.msg_rate = rate(forwarded, fwd_before, uptime - then)
            row.byte_rate = rate(bytes_out, bytes_before, uptime - then)
        if name not in self.brokers and len(self.brokers) >= _MAX_BROKERS:
            self.ignored += 1  # anyone may publish on ('$broker', 'stats'): a bounded table
            return
        self._broker_before[name] = (uptime, forwarded, bytes_out)
        self.brokers[name] = row

    @property
    def broker(self) -> BrokerRow | None:
        """The broker heard from last (the only one, without a pair)."""
        return max(self.brokers.values(), key=lambda b: b.last_seen, default=None)

    def group_hello(self, group: str, p: Mapping[str, Any], now: float) -> None:
        """A ``('$actors', 'hello', GROUP)`` announcement: host, pid, version, actor names."""
        row = self._group(group)
        if row is None:
            return
        row.host = text_of(p, "host", row.host)
        row.version = text_of(p, "version", row.version)
        row.pid = int_of(p, "pid") or row.pid
        names = p.get("actors")
        if isinstance(names, list | tuple):
            row.actors = [str(a)[:_MAX_NAME] for a in names[:_MAX_ACTORS]]
        if row.state == "stopped":
            row.state = "up"
        row.last_seen = max(row.last_seen, now)

    def group_bye(self, group: str) -> None:
        """A ``('$actors', 'bye', GROUP)``: the group stopped cleanly."""
        row = self._group(group)
        if row is not None:
            row.state = "stopped"

    def group_stats(self, group: str, p: Mapping[str, Any], now: float) -> None:
        """A ``('$actors', 'stats', GROUP)`` payload (``actors._runner.group_statistics``)."""
        hub = p.get("hub") if isinstance(p.get("hub"), Mapping) else {}
        actors = p.get("actors") if isinstance(p.get("actors"), Mapping) else {}
        timing = p.get("timing") if isinstance(p.get("timing"), Mapping) else {}
        assert isinstance(hub, Mapping) and isinstance(actors, Mapping) and isinstance(timing, Mapping)
        pid = int_of(p, "pid")
        before = self._before.get(group)
        if before is not None and before.pid != pid:
            before = None  # another process under the same group name
        seconds = now - before.at if before is not None else 0.0
        row = self._group(group)
        if row is None:
            return
        row.pid = pid
        row.host = text_of(p, "host", row.host)
        if row.state != "stopped":  # the last report comes just before the bye
            row.state = "up"
        row.last_seen = now
        row.received, row.published = int_of(hub, "received"), int_of(hub, "published")
        row.in_rate = rate(row.received, before.hub.get("received") if before else None, seconds)
        row.out_rate = rate(row.published, before.hub.get("published") if before else None, seconds)
        row.gaps = int_of(hub, "gaps")
        row.skimmed = int_of(hub, "skimmed")
        row.dropped = int_of(hub, "publish_dropped")
        brokers = int_of(hub, "brokers") or 1
        row.brokers = f"{int_of(hub, 'brokers_up')}/{brokers}" if brokers > 1 else "1"
        row.redundant = int_of(hub, "redundant")
        row.publishers_live = int_of(hub, "publishers_live")
        row.publishers_gone = int_of(hub, "publishers_gone")
        row.slow = bool(hub.get("slow", False))
        row.lag_seconds = float_of(hub, "lag_seconds")
        counters: dict[str, dict[str, int]] = {}
        timings: dict[str, dict[str, dict[int, int]]] = {}
        for raw_name, stats in actors.items():
            if not isinstance(stats, Mapping):
                continue
            name = str(raw_name)[:_MAX_NAME]
            if (group, name) not in self.actors and len(self.actors) >= _MAX_ACTORS:
                self.ignored += 1  # one actor row that does not fit
                continue
            counters[name] = {k: int_of(stats, k) for k in ("handled", "published")}
            was = before.actors.get(name) if before else None
            times = timing.get(name) if isinstance(timing.get(name), Mapping) else {}
            assert isinstance(times, Mapping)
            timings[name] = {kind: buckets_of(times.get(kind)) for kind in ("handler_ns", "latency_ns")}
            earlier = before.timing.get(name, {}) if before is not None else {}
            handler = window(timings[name]["handler_ns"], earlier.get("handler_ns"))
            latency = window(timings[name]["latency_ns"], earlier.get("latency_ns"))
            self.actors[(group, name)] = ActorRow(
                group=group,
                actor=name,
                handled=counters[name]["handled"],
                published=counters[name]["published"],
                in_rate=rate(counters[name]["handled"], was["handled"] if was else None, seconds),
                out_rate=rate(counters[name]["published"], was["published"] if was else None, seconds),
                queued=int_of(stats, "queued"),
                dropped=int_of(stats, "dropped"),
                failures=int_of(stats, "failures"),
                running=bool(stats.get("running", True)),
                handler_p50=percentile(handler, 50),
                handler_p99=percentile(handler, 99),
                latency_p50=percentile(latency, 50),
                latency_p99=percentile(latency, 99),
            )
        for key in [k for k in self.actors if k[0] == group and k[1] not in counters]:
            del self.actors[key]  # the group no longer runs that actor
        row.actors = sorted(counters)
        self._before[group] = _Previous(now, pid, {k: int_of(hub, k) for k in hub}, counters, timings)

    def slow_notice(self, hub: str, p: Mapping[str, Any]) -> None:
        """A ``('$bus', 'slow', HUB)`` notice: ``state`` is ``slow`` or ``recovered``."""
        if p.get("state") != "slow":
            self.slow.pop(hub, None)
        elif hub not in self.slow and len(self.slow) >= _MAX_SLOW:
            self.ignored += 1
        else:
            gaps = p.get("gaps")
            self.slow[hub] = SlowNotice(number_of(p, "lag_seconds"), gaps if type(gaps) is int else None)

    def alert(self, record: Mapping[str, Any]) -> None:
        """A ``('$alerts', 'profile', ACTOR)`` record (``observability.profiling`` ``alert_record``)."""
        function = record.get("function")
        name = text_of(function, "name", "?") if isinstance(function, Mapping) else str(function)[:MAX_TEXT]
        key = (str(record.get("group", ""))[:_MAX_NAME], str(record.get("actor", ""))[:_MAX_NAME], name)
        if record.get("state") != "active":
            self.alerts.pop(key, None)
        elif key not in self.alerts and len(self.alerts) >= _MAX_ALERTS:
            self.ignored += 1
        else:
            self.alerts[key] = AlertRow(
                *key, share=text_of(record, "share", ""), relative_change=number_of(record, "relative_change")
            )

    # -- output -----------------------------------------------------------------------------------
    def refresh(self, now: float) -> None:
        """Mark groups and brokers not heard from within :data:`STALE_AFTER` seconds stale (rates unknown)."""
        for broker in self.brokers.values():
            broker.stale = now - broker.last_seen > STALE_AFTER
            if broker.stale:
                broker.msg_rate = broker.byte_rate = None
        for row in self.groups.values():
            if row.state == "up" and now - row.last_seen > STALE_AFTER:
                row.state = "stale"
                row.in_rate = row.out_rate = None
        alerts = Counter((g, a) for g, a, _ in self.alerts)  # once, not once per actor
        for actor in self.actors.values():
            group = self.groups.get(actor.group)
            actor.stale = group is not None and group.state != "up"
            if actor.stale:
                actor.in_rate = actor.out_rate = None
            # its own alerts, and its group's (an alert about a group of several actors names the group)
            actor.alerts = alerts[(actor.group, actor.actor)]
            if actor.actor != actor.group:
                actor.alerts += alerts[(actor.group, actor.group)]

    def actor_rows(self, sort: str = "group") -> list[ActorRow]:
        """Every actor, sorted by one of :data:`SORT_KEYS` (numbers highest first, then by name)."""
        rows = list(self.actors.values())
        value = {
            "in/s": lambda r: r.in_rate or 0.0,
            "out/s": lambda r: r.out_rate or 0.0,
            "handler p99": lambda r: r.handler_p99 or 0,
            "latency p99": lambda r: r.latency_p99 or 0,
            "dropped": lambda r: r.dropped,
            "queued": lambda r: r.queued,
        }.get(sort)
        rows.sort(key=lambda r: (r.group, r.actor))
        if value is not None:
            rows.sort(key=value, reverse=True)  # stable: ties stay in name order
        return rows

    def group_rows(self) -> list[GroupRow]:
        """Every group seen, by name."""
        return [self.groups[g] for g in sorted(self.groups)]

    def _group(self, group: str) -> GroupRow | None:
        """The row of ``group``, made if there is room; None (counted in ``ignored``) if not."""
        row = self.groups.get(group)
        if row is None:
            if len(self.groups) >= _MAX_GROUPS:
                self.ignored += 1
                return None
            row = self.groups[group] = GroupRow(group)
        return row
