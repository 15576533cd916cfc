"""The rows ``tickbus top`` shows, and the checked readers of a statistics payload's values.

Anyone may publish on the keys ``top`` reads, so every value is read through a checker that takes
only the expected type (``int_of``, ``number_of``, ``text_of``, ``buckets_of``) and bounds what it
keeps: a text to :data:`MAX_TEXT` characters, a histogram to :data:`MAX_BUCKETS` entries.
:class:`~tickbus._top_model.BusModel` fills the rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_BUCKETS = 512  # entries of one timing histogram (a Histogram has 496 buckets)
MAX_TEXT = 256  # characters kept of a host, version, share or function name


def percentile(buckets: Mapping[int, int], q: float) -> int | None:
    """The upper bound of the bucket holding the ``q``-th percentile of ``{upper bound: count}``."""
    total = sum(n for n in buckets.values() if n > 0)
    if not total:
        return None
    rank = max(1, -(-total * q // 100))
    seen = 0
    for upper in sorted(buckets):
        seen += max(buckets[upper], 0)
        if seen >= rank:
            return upper
    return max(buckets)


def buckets_of(raw: Any) -> dict[int, int]:
    """``[[upper, count], ...]`` from a stats payload as a dict; malformed entries are skipped, and
    entries past :data:`MAX_BUCKETS` too (a real histogram has fewer)."""
    out: dict[int, int] = {}
    if isinstance(raw, Sequence):
        for entry in raw[:MAX_BUCKETS]:
            if isinstance(entry, Sequence) and len(entry) == 2 and all(type(v) is int for v in entry):
                out[entry[0]] = entry[1]
    return out


def window(now: dict[int, int], before: dict[int, int] | None) -> dict[int, int]:
    """The buckets recorded between two cumulative reports (all of ``now`` without an earlier one)."""
    if before is None:
        return now
    diff = {upper: n - before.get(upper, 0) for upper, n in now.items()}
    if any(n < 0 for n in diff.values()):  # the process restarted: only the new report counts
        return now
    return {upper: n for upper, n in diff.items() if n}


def int_of(d: Mapping[str, Any], name: str) -> int:
    value = d.get(name, 0)
    return value if type(value) is int else 0


def number_of(d: Mapping[str, Any], name: str) -> float | None:
    """``d[name]`` when it is a number (not a bool), as a float; else None."""
    value = d.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def float_of(d: Mapping[str, Any], name: str) -> float:
    value = number_of(d, name)
    return 0.0 if value is None else value


def text_of(d: Mapping[str, Any], name: str, default: str) -> str:
    """``d[name]`` when it is a string (cut to :data:`MAX_TEXT` characters), else ``default``."""
    value = d.get(name)
    return value[:MAX_TEXT] if isinstance(value, str) else default


def rate(now: int, before: int | None, seconds: float) -> float | None:
    if before is None or seconds <= 0 or now < before:
        return None
    return (now - before) / seconds


@dataclass
class ActorRow:
    """One actor as ``tickbus top`` shows it."""

    group: str
    actor: str
    handled: int = 0
    published: int = 0
    in_rate: float | None = None
    out_rate: float | None = None
    queued: int = 0
    dropped: int = 0
    failures: int = 0
    running: bool = True
    handler_p50: int | None = None
    handler_p99: int | None = None
    latency_p50: int | None = None
    latency_p99: int | None = None
    alerts: int = 0
    stale: bool = False


@dataclass
class GroupRow:
    """One ``tickbus run`` group (one hub)."""

    group: str
    pid: int = 0
    host: str = ""
    version: str = ""
    received: int = 0
    published: int = 0
    in_rate: float | None = None
    out_rate: float | None = None
    gaps: int = 0
    skimmed: int = 0
    """Messages the hub discarded unread, behind a flood or held by a full mailbox (also in gaps)."""
    dropped: int = 0
    publishers_live: int = 0
    publishers_gone: int = 0
    slow: bool = False
    lag_seconds: float = 0.0
    brokers: str = "1"
    """Brokers up / connected to (``2/2`` for a healthy pair)."""
    redundant: int = 0
    state: str = "up"
    """``up``, ``stale`` (no statistics for a while) or ``stopped`` (it said bye)."""
    last_seen: float = 0.0
    actors: list[str] = field(default_factory=list)


@dataclass
class BrokerRow:
    """The broker's totals."""

    uptime_s: float = 0.0
    messages_forwarded: int = 0
    bytes_out: int = 0
    msg_rate: float | None = None
    byte_rate: float | None = None
    publishers: int = 0
    subscribers: int = 0
    subscriptions: int = 0
    refused: int = 0
    denied: int = 0
    endpoints: list[str] = field(default_factory=list)
    last_seen: float = 0.0
    stale: bool = False
    """No statistics for ``STALE_AFTER`` seconds (``_top_model``): down, or cut off from this view."""


@dataclass
class SlowNotice:
    """A hub's slow episode as announced: only the fields that were numbers."""

    lag_seconds: float | None = None
    gaps: int | None = None


@dataclass
class AlertRow:
    """An active profile alert: its function, actor and group, the share and its relative change."""

    group: str
    actor: str
    function: str
    share: str = ""
    relative_change: float | None = None
    """None: the function is new (or the record gave no number)."""
