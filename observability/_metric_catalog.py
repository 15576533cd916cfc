"""What tickbus exports as metrics, and how each value is read from a ``statistics()`` snapshot.

Names follow the OpenTelemetry semantic conventions where one exists (``messaging.*``, ``process.*``)
and are ``tickbus.*`` otherwise; units are UCUM (``s``, ``By``, ``{message}``). Every counter here is
an *observable* instrument, or a histogram injected at collection (:mod:`._histogram_export`): the
callbacks run in the exporter's thread, once per collection, and nothing touches OpenTelemetry per
message. Attributes: ``tickbus.actor`` (actor name), ``tickbus.hub`` (hub name, the group's name
under ``tickbus run``), ``messaging.destination.name`` (a key's first segment), ``messaging.system``
(``tickbus``), ``cpu.mode``, ``network.io.direction``, ``tickbus.broker`` (a broker's frontend
endpoint, on a hub's per-broker series when it connects to several), ``span.kind`` and
``tickbus.reason`` (tracing's spans, and sampled messages left untraced).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ._histogram_export import HistogramMetric, HistogramSeries
from ._loop_health import loop_lag
from ._metric_sources import Sources
from ._process_metrics import PROCESS_INSTRUMENTS

_PROCESS_START_NS = time.time_ns()
_MESSAGING = {"messaging.system": "tickbus"}


@dataclass(frozen=True)
class _Spec:
    """One observable instrument: name, unit, description, and the statistics fields it reports."""

    name: str
    unit: str
    description: str
    fields: tuple[tuple[str, Mapping[str, str]], ...]
    updown: bool = False


def _one(name: str) -> tuple[tuple[str, Mapping[str, str]], ...]:
    return ((name, {}),)


def _directions(received: str, sent: str) -> tuple[tuple[str, Mapping[str, str]], ...]:
    return ((received, {"network.io.direction": "receive"}), (sent, {"network.io.direction": "transmit"}))


_ACTOR_SPECS = (
    _Spec(
        "tickbus.actor.failures",
        "{failure}",
        "Exceptions raised by handlers, timers and run()",
        _one("failures"),
    ),
    _Spec(
        "tickbus.actor.messages.dropped", "{message}", "Messages dropped from a full mailbox", _one("dropped")
    ),
    _Spec(
        "tickbus.actor.queue.length",
        "{message}",
        "Messages waiting in the mailbox (queue depth)",
        _one("queued"),
        True,
    ),
    _Spec("tickbus.actor.timer.runs", "{run}", "Runs of @every timers", _one("timer_runs")),
    _Spec(
        "tickbus.actor.timer.overruns",
        "{run}",
        "Timer intervals skipped because a run overran",
        _one("timer_overruns"),
    ),
)
_HUB_SPECS = (
    _Spec(
        "tickbus.hub.messages.published", "{message}", "Messages published through the hub", _one("published")
    ),
    _Spec(
        "tickbus.hub.messages.received", "{message}", "Messages received from the broker", _one("received")
    ),
    _Spec(
        "tickbus.hub.messages.unmatched",
        "{message}",
        "Received messages no subscription matched",
        _one("unmatched"),
    ),
    _Spec("tickbus.hub.gaps", "{message}", "Messages lost: sequence numbers skipped", _one("gaps")),
    _Spec("tickbus.hub.duplicates", "{message}", "Messages received more than once", _one("duplicates")),
    _Spec("tickbus.hub.reordered", "{message}", "Messages received after a later one", _one("reordered")),
    _Spec(
        "tickbus.hub.redundant",
        "{message}",
        "Copies from a second broker of messages already delivered (a broker pair)",
        _one("redundant"),
    ),
    _Spec(
        "tickbus.hub.implausible",
        "{jump}",
        "Sequence jumps taken back: the stream went on from before them",
        _one("implausible"),
    ),
    _Spec("tickbus.hub.malformed", "{message}", "Received messages dropped as malformed", _one("malformed")),
    _Spec("tickbus.hub.oversize", "{message}", "Received messages dropped as too large", _one("oversize")),
    _Spec(
        "tickbus.hub.publish.dropped",
        "{message}",
        "Messages not sent: send queue full (HWM)",
        _one("publish_dropped"),
    ),
    _Spec(
        "tickbus.hub.publish.skipped",
        "{message}",
        "Messages not sent: no subscriber",
        _one("publish_skipped"),
    ),
    _Spec(
        "tickbus.hub.listener.errors", "{error}", "Exceptions raised by listeners", _one("listener_errors")
    ),
    _Spec("tickbus.hub.disconnects", "{disconnect}", "Losses of the broker connection", _one("disconnects")),
    _Spec("tickbus.hub.streams", "{stream}", "(publisher, key) sequences tracked", _one("streams"), True),
    _Spec(
        "tickbus.hub.connected", "{connection}", "1 while connected to the broker", _one("connected"), True
    ),
    _Spec(
        "tickbus.hub.brokers.up", "{broker}", "Brokers connected on both sockets", _one("brokers_up"), True
    ),
    _Spec("tickbus.hub.brokers", "{broker}", "Brokers this hub connects to", _one("brokers"), True),
    _Spec("tickbus.hub.heartbeats", "{message}", "Publisher heartbeats received", _one("heartbeats")),
    _Spec(
        "tickbus.hub.publishers.live",
        "{publisher}",
        "Publishers heartbeating on time",
        _one("publishers_live"),
        True,
    ),
    _Spec(
        "tickbus.hub.publishers.gone",
        "{publisher}",
        "Publishers whose heartbeats stopped",
        _one("publishers_gone"),
        True,
    ),
    _Spec(
        "tickbus.hub.publishers.evicted",
        "{publisher}",
        "Publishers forgotten to stay within the liveness table's bound",
        _one("publishers_evicted"),
    ),
    _Spec("tickbus.hub.incarnations", "{restart}", "Publishers seen restarting", _one("incarnations")),
    _Spec(
        "tickbus.hub.renumbered",
        "{restart}",
        "Times this hub numbered its keys afresh under a new publisher id (too many keys)",
        _one("renumbered"),
    ),
    _Spec("tickbus.hub.holds", "{hold}", "Times reading stopped for an actor's full mailbox", _one("holds")),
    _Spec(
        "tickbus.hub.skimmed",
        "{message}",
        "Frames discarded unread by a hub held, or behind a flood, for half the heartbeat timeout",
        _one("skimmed"),
    ),
    _Spec(
        "tickbus.hub.renewed",
        "{socket}",
        "Receiving sockets replaced after their connection to a broker was lost",
        _one("renewed"),
    ),
    _Spec("tickbus.hub.slow", "{flag}", "1 while this hub is flagged a slow consumer", _one("slow"), True),
    _Spec("tickbus.hub.slow.episodes", "{episode}", "Times this hub was flagged slow", _one("slow_episodes")),
    _Spec(
        "tickbus.hub.lag.unconfirmed",
        "{check}",
        "Old send times while this hub had no backlog: a sender's clock behind, or made up",
        _one("lag_unconfirmed"),
    ),
    _Spec(
        "tickbus.hub.lag", "s", "Age of the last message processed at last check", _one("lag_seconds"), True
    ),
)
_BROKER_SPECS = (
    _Spec(
        "tickbus.broker.messages.forwarded",
        "{message}",
        "Messages forwarded (frames out / 3)",
        _one("messages_forwarded"),
    ),
    _Spec(
        "tickbus.broker.io",
        "By",
        "Bytes received from publishers and forwarded",
        _directions("bytes_in", "bytes_out"),
    ),
    _Spec(
        "tickbus.broker.frames",
        "{frame}",
        "ZeroMQ frames received and forwarded",
        _directions("frames_in", "frames_out"),
    ),
    _Spec("tickbus.broker.subscribers", "{subscriber}", "Connected subscribers", _one("subscribers"), True),
    _Spec("tickbus.broker.publishers", "{publisher}", "Connected publishers", _one("publishers"), True),
    _Spec(
        "tickbus.broker.subscriptions",
        "{subscription}",
        "Distinct subscribed prefixes",
        _one("subscriptions"),
        True,
    ),
    _Spec(
        "tickbus.broker.refused",
        "{connection}",
        "Connections refused (CURVE/ZAP, handshake)",
        _one("refused"),
    ),
)

Rows = Callable[[], Iterable[tuple[Mapping[str, str], object]]]
Callback = Callable[[CallbackOptions], Iterable[Observation]]


def _number(value: object) -> int | float:
    return value if type(value) is float else int(value)  # type: ignore[call-overload]


def _observe(spec: _Spec, rows: Rows) -> Callback:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(_number(getattr(stats, name)), {**attributes, **extra})
            for attributes, stats in rows()
            for name, extra in spec.fields
        ]

    return callback


def _register(meter: Meter, spec: _Spec, callback: Callback) -> None:
    create = meter.create_observable_up_down_counter if spec.updown else meter.create_observable_counter
    create(spec.name, callbacks=[callback], unit=spec.unit, description=spec.description)


def _per_prefix(sources: Sources, index: int) -> Callback:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {**attributes, **_MESSAGING, "messaging.destination.name": prefix})
            for attributes, _stats, counts_in, counts_out in sources.snapshot().actors
            for prefix, n in (counts_in if index == 0 else counts_out).items()
        ]

    return callback


_BROKER_COPIES = (  # per broker of a hub on several (HubStatistics.by_broker), attribute tickbus.broker
    _Spec("tickbus.hub.broker.up", "{broker}", "1 while this broker has a live session", _one("up"), True),
    _Spec(
        "tickbus.hub.broker.missed",
        "{message}",
        "Numbers this broker skipped (its copies lost; a gap only when no broker brought them)",
        _one("missed"),
    ),
    _Spec(
        "tickbus.hub.broker.redundant",
        "{message}",
        "This broker's copies of messages another broker delivered first",
        _one("redundant"),
    ),
    _Spec(
        "tickbus.hub.broker.repeated",
        "{message}",
        "Numbers this broker brought twice (a replay or a forgery)",
        _one("repeated"),
    ),
    _Spec(
        "tickbus.hub.broker.send.dropped",
        "{message}",
        "Messages not sent to this broker: its send queue was full (the others carried them)",
        _one("send_dropped"),
    ),
    _Spec(
        "tickbus.hub.broker.implausible",
        "{jump}",
        "Sequence jumps that came through this broker and were taken back (forged or replayed)",
        _one("implausible"),
    ),
)


def _per_broker(sources: Sources) -> Rows:
    def rows() -> Iterable[tuple[Mapping[str, str], object]]:
        return [
            ({**attributes, "tickbus.broker": str(copies.endpoint)}, copies)
            for attributes, stats in sources.snapshot().hubs
            for copies in getattr(stats, "by_broker", ())
        ]

    return rows


def create_instruments(meter: Meter, sources: Sources) -> None:
    """Create every observable instrument on ``meter``, reading ``sources`` at each collection."""
    for spec in _ACTOR_SPECS:
        _register(meter, spec, _observe(spec, lambda: [(a[0], a[1]) for a in sources.snapshot().actors]))
    for spec in _HUB_SPECS:
        _register(meter, spec, _observe(spec, lambda: sources.snapshot().hubs))
    for spec in _BROKER_SPECS:
        _register(meter, spec, _observe(spec, lambda: sources.snapshot().brokers))
    for spec in _BROKER_COPIES:
        _register(meter, spec, _observe(spec, _per_broker(sources)))
    meter.create_observable_counter(
        "messaging.client.consumed.messages",
        callbacks=[_per_prefix(sources, 0)],
        unit="{message}",
        description="Messages an actor's handlers started on, by key prefix (messaging.destination.name)",
    )
    meter.create_observable_counter(
        "messaging.client.sent.messages",
        callbacks=[_per_prefix(sources, 1)],
        unit="{message}",
        description="Messages an actor published, by key prefix (messaging.destination.name)",
    )
    for name, callback, unit, description, updown in PROCESS_INSTRUMENTS:
        create = meter.create_observable_up_down_counter if updown else meter.create_observable_counter
        create(name, callbacks=[callback], unit=unit, description=description)


def histograms(sources: Sources) -> list[HistogramMetric]:
    """The local histograms to inject at each collection (see :mod:`._histogram_export`)."""
    actors = sources.actors()
    loop = [HistogramSeries(loop_lag.histogram, {}, _PROCESS_START_NS)]
    return [
        HistogramMetric(
            "messaging.process.duration",
            "s",
            "Time an actor's handler took per message",
            [
                HistogramSeries(r.source.handler_ns, {**r.attributes, **_MESSAGING}, r.start_ns)
                for r in actors
            ],
        ),
        HistogramMetric(
            "tickbus.actor.latency",
            "s",
            "End-to-end latency: publisher's send to the handler's start (wall clock across hosts)",
            [HistogramSeries(r.source.latency_ns, r.attributes, r.start_ns) for r in actors],
        ),
        HistogramMetric(
            "tickbus.loop.lag",
            "s",
            "How late the event loop woke a periodic probe",
            loop if loop_lag.enabled or loop_lag.histogram.count else [],
        ),
    ]
