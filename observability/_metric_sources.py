"""Metric sources: the actors, hubs and brokers whose ``statistics()`` the exporters read.

Sources are duck-typed through the protocols below, so observability imports neither ``actors`` nor
``broker`` (``actors`` imports ``observability``); mypy checks the real classes against them where
they register. Registration happens on the event loop's thread, reading in the exporters' threads:
the lists are guarded by a lock held only to copy them, and the sources themselves are read without
one, because each read is a snapshot of plain ints (or a C-level copy of a dict) under the GIL, at
worst one message behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from loguru import logger

from ._histogram import Histogram


class ActorCounters(Protocol):
    """What the metrics read from an actor's ``statistics()`` (:class:`actors.ActorStatistics`)."""

    @property
    def failures(self) -> int: ...
    @property
    def queued(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def timer_runs(self) -> int: ...
    @property
    def timer_overruns(self) -> int: ...


class ActorSource(Protocol):
    """An actor (:class:`actors.Actor`): counters, per-prefix counts and two local histograms."""

    @property
    def name(self) -> str: ...
    @property
    def handler_ns(self) -> Histogram: ...
    @property
    def latency_ns(self) -> Histogram: ...
    @property
    def messages_in(self) -> dict[str, int]: ...
    @property
    def messages_out(self) -> dict[str, int]: ...
    def statistics(self) -> ActorCounters: ...


class HubCounters(Protocol):
    """What the metrics read from a hub's ``statistics()`` (:class:`actors.HubStatistics`)."""

    @property
    def published(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def unmatched(self) -> int: ...
    @property
    def listener_errors(self) -> int: ...
    @property
    def malformed(self) -> int: ...
    @property
    def oversize(self) -> int: ...
    @property
    def gaps(self) -> int: ...
    @property
    def duplicates(self) -> int: ...
    @property
    def reordered(self) -> int: ...
    @property
    def redundant(self) -> int: ...
    @property
    def brokers(self) -> int: ...
    @property
    def brokers_up(self) -> int: ...
    @property
    def implausible(self) -> int: ...
    @property
    def publish_dropped(self) -> int: ...
    @property
    def publish_skipped(self) -> int: ...
    @property
    def streams(self) -> int: ...
    @property
    def connected(self) -> bool: ...
    @property
    def disconnects(self) -> int: ...
    @property
    def heartbeats(self) -> int: ...
    @property
    def publishers_live(self) -> int: ...
    @property
    def publishers_gone(self) -> int: ...
    @property
    def publishers_evicted(self) -> int: ...
    @property
    def incarnations(self) -> int: ...
    @property
    def renumbered(self) -> int: ...
    @property
    def holds(self) -> int: ...
    @property
    def skimmed(self) -> int: ...
    @property
    def renewed(self) -> int: ...
    @property
    def slow(self) -> bool: ...
    @property
    def slow_episodes(self) -> int: ...
    @property
    def lag_unconfirmed(self) -> int: ...
    @property
    def lag_seconds(self) -> float: ...


class HubSource(Protocol):
    """A hub (:class:`actors.Hub`, or the broker-connected hub ``actors.connect()`` returns)."""

    @property
    def name(self) -> str: ...
    def statistics(self) -> HubCounters: ...


class BrokerCounters(Protocol):
    """What the metrics read from a broker's ``statistics()`` (:class:`broker.BrokerStatistics`)."""

    @property
    def frames_in(self) -> int: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def frames_out(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...
    @property
    def messages_forwarded(self) -> int: ...
    @property
    def subscribers(self) -> int: ...
    @property
    def publishers(self) -> int: ...
    @property
    def subscriptions(self) -> int: ...
    @property
    def refused(self) -> int: ...


class BrokerSource(Protocol):
    """A broker (:class:`broker.Broker`); its ``statistics()`` is thread-safe and may raise when stopped."""

    def statistics(self) -> BrokerCounters: ...


S = TypeVar("S")


@dataclass(frozen=True, eq=False)
class Registered(Generic[S]):
    """A registered source, the attributes of its series, and when its cumulative series start."""

    source: S
    attributes: Mapping[str, str]
    start_ns: int = field(default_factory=time.time_ns)


@dataclass(frozen=True)
class Snapshot:
    """Every source's ``statistics()`` (and an actor's per-prefix counts) at one moment."""

    actors: list[tuple[Mapping[str, str], ActorCounters, dict[str, int], dict[str, int]]]
    hubs: list[tuple[Mapping[str, str], HubCounters]]
    brokers: list[tuple[Mapping[str, str], BrokerCounters]]


class Sources:
    """The registered actors, hubs and brokers; read by the exporters' threads."""

    _FRESH = 0.1  # s: the instruments of one collection share one snapshot

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the lists; held briefly, also by the event loop's thread
        self._reading = threading.Lock()  # one snapshot at a time, across exporter threads
        self._actors: list[Registered[ActorSource]] = []
        self._hubs: list[Registered[HubSource]] = []
        self._brokers: list[Registered[BrokerSource]] = []
        self._snapshot: tuple[float, Snapshot] | None = None
        self._failing: set[tuple[int, str]] = set()

    def add_actor(self, actor: ActorSource) -> None:
        """Export ``actor``'s metrics, with the attribute ``tickbus.actor``."""
        with self._lock:
            self._actors.append(Registered(actor, {"tickbus.actor": actor.name}))
            self._snapshot = None

    def add_hub(self, hub: HubSource) -> None:
        """Export ``hub``'s metrics, with the attribute ``tickbus.hub``."""
        with self._lock:
            self._hubs.append(Registered(hub, {"tickbus.hub": hub.name}))
            self._snapshot = None

    def add_broker(self, broker: BrokerSource) -> None:
        """Export ``broker``'s metrics (one broker per process: its series have no attributes)."""
        with self._lock:
            self._brokers.append(Registered(broker, {}))
            self._snapshot = None

    def remove(self, *sources: object) -> None:
        """Stop exporting ``sources`` (any of actors, hubs, brokers; unknown ones are ignored)."""
        with self._lock:
            self._actors = [r for r in self._actors if all(r.source is not s for s in sources)]
            self._hubs = [r for r in self._hubs if all(r.source is not s for s in sources)]
            self._brokers = [r for r in self._brokers if all(r.source is not s for s in sources)]
            self._snapshot = None

    def counts(self) -> tuple[int, int, int]:
        """How many actors, hubs and brokers are registered."""
        with self._lock:
            return len(self._actors), len(self._hubs), len(self._brokers)

    def actors(self) -> list[Registered[ActorSource]]:
        """The registered actors (a copy)."""
        with self._lock:
            return list(self._actors)

    def snapshot(self) -> Snapshot:
        """Every source's statistics, reused for :attr:`_FRESH` seconds (one collection).

        Sources are read outside the registry lock (a broker's ``statistics()`` may wait for its proxy),
        so registering from the event loop never waits for an exporter.
        """
        with self._reading:
            with self._lock:
                now = time.monotonic()
                if self._snapshot is not None and now - self._snapshot[0] < self._FRESH:
                    return self._snapshot[1]
                registered = (list(self._actors), list(self._hubs), list(self._brokers))
            actor_list, hub_list, broker_list = registered
            snapshot = Snapshot(
                actors=[
                    (r.attributes, stats, dict(r.source.messages_in), dict(r.source.messages_out))
                    for r in actor_list
                    if (stats := self._read(r.source, r.source.statistics)) is not None
                ],
                hubs=[
                    (r.attributes, hub)
                    for r in hub_list
                    if (hub := self._read(r.source, r.source.statistics)) is not None
                ],
                brokers=[
                    (r.attributes, broker)
                    for r in broker_list
                    if (broker := self._read(r.source, r.source.statistics)) is not None
                ],
            )
            with self._lock:
                self._snapshot = (now, snapshot)
            return snapshot

    def _read(self, source: object, statistics: Callable[[], S]) -> S | None:
        try:
            return statistics()
        except Exception as exc:  # a stopped broker, say: skip it this time, say so once
            key = (id(source), type(exc).__name__)
            if key not in self._failing:
                self._failing.add(key)
                logger.debug("metrics skip {!r}: statistics() raised {!r}", source, exc)
            return None
