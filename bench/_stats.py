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
    """Per-subscriber and total receive rates and loss for a flat-out run."""
    rates = [receive_rate(s) for s in subs]
    received = [s["received"] for s in subs]
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
