"""Turning raw publisher/subscriber results into the reported figures (no numpy: plain Python)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(ordered: Sequence[int], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of an ascending sequence."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def receive_rate(sub: dict[str, Any]) -> float:
    """Messages per second a subscriber received, first to last measured message."""
    span_ns = sub["last_ns"] - sub["first_ns"]
    if sub["received"] < 2 or span_ns <= 0:
        return 0.0
    return float((sub["received"] - 1) * 1e9 / span_ns)


def loss_pct(sent: int, received: int) -> float:
    """Percentage of sent messages that did not arrive (never negative)."""
    return max(0.0, 100.0 * (sent - received) / sent) if sent else math.nan


def throughput(pub: dict[str, Any], subs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-subscriber and total receive rates and loss for a flat-out run, and the CPU time a
    message cost: the publisher's per message sent, a subscriber's per message received (all of a
    process's threads: its ZeroMQ I/O thread too), ``cpu_ns_per_msg`` the two added (the mean over
    subscribers): what an operator pays in CPU for the rate, e.g. with observability on. On a
    2-core machine it moves between runs about as much as the rate does (+-5 %): batch sizes follow
    the scheduling."""
    rates = [receive_rate(s) for s in subs]
    received = [s["received"] for s in subs]
    pub_cpu = pub.get("cpu_ns", 0) / pub["sent"] if pub["sent"] else math.nan
    sub_cpu = [s.get("cpu_ns", 0) / s["received"] if s["received"] else math.nan for s in subs]
    mean_sub_cpu = sum(sub_cpu) / len(sub_cpu) if sub_cpu else math.nan
    return {
        "sent": pub["sent"],
        "send_rate": pub["send_rate"],
        "per_subscriber_rate": rates,
        "rate": sum(rates) / len(rates) if rates else 0.0,
        "min_rate": min(rates, default=0.0),
        "total_rate": sum(rates),
        "received": received,
        "loss_pct": loss_pct(pub["sent"] * len(subs), sum(received)),
        "publisher": pub["client"],
        "subscribers": [s["client"] for s in subs],
        "finished_by": [s["finished_by"] for s in subs],
        "pub_cpu_ns": pub_cpu,
        "sub_cpu_ns": sub_cpu,
        "cpu_ns_per_msg": pub_cpu + mean_sub_cpu,
    }


def latency(pub: dict[str, Any], subs: list[dict[str, Any]]) -> dict[str, Any]:
    """One-way latency percentiles (µs) over every subscriber's measured messages."""
    ordered = sorted(x for s in subs for x in (s["latencies_ns"] or ()))
    received = sum(s["received"] for s in subs)

    def us(q: float) -> float:
        return percentile(ordered, q) / 1e3

    return {
        "sent": pub["sent"],
        "send_rate": pub["send_rate"],
        "received": received,
        "loss_pct": loss_pct(pub["sent"] * len(subs), received),
        "p50_us": us(50),
        "p90_us": us(90),
        "p99_us": us(99),
        "p999_us": us(99.9),
        "max_us": ordered[-1] / 1e3 if ordered else math.nan,
        "mean_us": sum(ordered) / len(ordered) / 1e3 if ordered else math.nan,
        "publisher": pub["client"],
        "subscribers": [s["client"] for s in subs],
    }


def counted_loss(stats: dict[str, int]) -> int | None:
    """Messages a subscriber-side client counted as never handled, or None when it counts none.

    tickbus and actors: sequence gaps seen by the hub (which include what the publisher's hub
    dropped at its full send queue) plus what the actor's full mailbox shed; NATS: the messages
    nats-py dropped for a slow consumer; raw ZeroMQ counts nothing.
    """
    if "gaps" in stats:
        return stats["gaps"] + stats.get("actor_dropped", 0)
    if "slow_consumer_drops" in stats:
        return stats["slow_consumer_drops"]
    return None


def pipeline(pub: dict[str, Any], subs: list[dict[str, Any]], models: list[dict[str, Any]]) -> dict[str, Any]:
    """Tick sent -> signal handled percentiles, each hop's (``hop_in_*``: tick sent -> the model's
    code got it; ``hop_out_*``: from there -> signal handled), loss, and what model and strategy
    counted as lost."""
    figures = latency(pub, subs)
    for hop, name in enumerate(("in", "out")):  # feed -> model, model -> strategy
        ordered = sorted(x for s in subs for x in ((s.get("hops_ns") or ((), ()))[hop]))
        for q, label in ((50, "p50"), (99, "p99"), (99.9, "p999")):
            figures[f"hop_{name}_{label}_us"] = percentile(ordered, q) / 1e3
    counts = [counted_loss(m["client"]) for m in models] + [counted_loss(s["client"]) for s in subs]
    figures["models"] = [m["client"] for m in models]
    figures["undelivered"] = pub["sent"] * len(subs) - figures["received"]
    figures["counted"] = None if None in counts else sum(c for c in counts if c is not None)
    return figures


def overload(
    pub: dict[str, Any], subs: list[dict[str, Any]], target: float, capacity: float
) -> dict[str, Any]:
    """Goodput against ``capacity`` at an offered load paced at ``target``, and loss accounting.

    ``undelivered`` is every message of the stream the subscriber never handled: measured
    (sent - received), warm-up, and the tail probes before the first one that arrived (the
    system's counters cover all three). It is None when no tail probe arrived (the subscriber
    was stopped first), because then the system's counters may still miss the stream's end.
    """
    (sub,) = subs
    goodput = receive_rate(sub)
    measured = pub["sent"] - sub["received"]
    warm = pub["warm_sent"] - sub["warm_received"]
    tail = sub["tail_index"]
    undelivered = measured + warm + tail if tail >= 0 else None
    counted = counted_loss(sub["client"])
    return {
        "target_rate": target,
        "capacity": capacity,
        "sent": pub["sent"],
        "send_rate": pub["send_rate"],
        "offered_ratio": pub["send_rate"] / capacity if capacity else math.nan,
        "received": sub["received"],
        "goodput": goodput,
        "goodput_ratio": goodput / capacity if capacity else math.nan,
        "loss_pct": loss_pct(pub["sent"], sub["received"]),
        "undelivered_measured": measured,
        "undelivered_warm": warm,
        "undelivered_tail_probes": tail,
        "undelivered": undelivered,
        "counted": counted,
        "all_counted": None if counted is None or undelivered is None else counted == undelivered,
        "publisher": pub["client"],
        "subscribers": [sub["client"]],
        "finished_by": [sub["finished_by"]],
    }
