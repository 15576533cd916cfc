"""Reading traces back: the OTLP JSON lines files under ``<data dir>/traces``, as timelines.

What ``tickbus trace list`` and ``tickbus trace show`` print. Every line of a file is one OTLP
``ExportTraceServiceRequest`` in JSON (``resourceSpans`` -> ``scopeSpans`` -> ``spans``, ids in hex),
as the file exporter writes them; a line that does not parse (a process killed mid-write) is skipped.
A trace's spans come from several files, one per process. The timeline nests spans by
``parentSpanId``, orders siblings by start time, and shows times relative to the trace's first span.
Span names, keys, publisher ids and error texts come from peers: every string of a span goes through
:func:`~._text.printable` before it is printed (no control character reaches the terminal).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import TracingError
from ._resource import data_dir
from ._text import printable

_KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_ERROR = 2  # STATUS_CODE_ERROR


@dataclass(frozen=True)
class TraceSpan:
    """One span as exported: ids in hex, times in ns since the epoch, attributes decoded."""

    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    kind: str  # PRODUCER, CONSUMER, INTERNAL, ...
    start_ns: int
    end_ns: int
    service: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id) of each link
    error: str | None = None  # the status message of a failed span

    @property
    def duration_ns(self) -> int:
        """How long the span lasted."""
        return self.end_ns - self.start_ns

    @property
    def who(self) -> str:
        """``service`` or ``service/actor`` when the actor's name differs from the service's."""
        actor = self.attributes.get("tickbus.actor")
        return f"{self.service}/{actor}" if actor and actor != self.service else self.service


@dataclass(frozen=True)
class TraceSummary:
    """One trace in a listing: its root span, size and the services it crossed."""

    trace_id: str
    root: TraceSpan
    spans: int
    services: tuple[str, ...]
    start_ns: int
    end_ns: int


def trace_files(directory: str | Path | None = None) -> list[Path]:
    """The trace files under ``<directory>/traces`` (default: the data directory), oldest first."""
    base = Path(directory) if directory is not None else data_dir(create=False)
    folder = base / "traces"
    if not folder.is_dir():
        raise TracingError(
            f"no trace directory {folder}; run actors with tracing on (`tickbus run` writes there) "
            "or pass --data-dir"
        )
    return sorted(folder.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))


def read_spans(
    paths: Iterable[Path], *, trace_id: str | None = None, since_ns: int | None = None
) -> Iterator[TraceSpan]:
    """The spans in ``paths``; only those of traces whose id starts with ``trace_id``, if given,
    and only those starting at or after ``since_ns``, if given."""
    prefix = trace_id.lower() if trace_id else None
    for path in paths:
        try:
            handle = path.open(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise TracingError(f"cannot read trace file {path}: {exc.strerror or exc}") from exc
        with handle:
            for line in handle:
                if prefix is not None and prefix not in line:  # cheap filter before parsing
                    continue
                try:
                    request = json.loads(line)
                except ValueError:
                    continue
                for span in _spans(request):
                    if prefix is not None and not span.trace_id.startswith(prefix):
                        continue
                    if since_ns is not None and span.start_ns < since_ns:
                        continue
                    yield span


def _spans(request: Any) -> Iterator[TraceSpan]:
    if not isinstance(request, dict):
        return
    for resource_spans in request.get("resourceSpans", ()):
        resource = _attributes(resource_spans.get("resource", {}).get("attributes", ()))
        service = str(resource.get("service.name", "?"))
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for raw in scope_spans.get("spans", ()):
                status = raw.get("status") or {}
                code = status.get("code")
                error = None
                if code in (_ERROR, "STATUS_CODE_ERROR"):
                    error = str(status.get("message") or "error")
                kind = raw.get("kind", 0)
                yield TraceSpan(
                    trace_id=str(raw.get("traceId", "")),
                    span_id=str(raw.get("spanId", "")),
                    parent_id=str(raw.get("parentSpanId") or ""),
                    name=str(raw.get("name", "")),
                    kind=_KINDS.get(kind, str(kind).removeprefix("SPAN_KIND_")),
                    start_ns=int(raw.get("startTimeUnixNano", 0)),
                    end_ns=int(raw.get("endTimeUnixNano", 0)),
                    service=service,
                    attributes=_attributes(raw.get("attributes", ())),
                    resource=resource,
                    links=tuple(
                        (str(link.get("traceId", "")), str(link.get("spanId", "")))
                        for link in raw.get("links", ())
                    ),
                    error=error,
                )


def _attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    return {pair["key"]: _value(pair.get("value", {})) for pair in pairs if "key" in pair}


def _value(value: Mapping[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [_value(v) for v in value["arrayValue"].get("values", ())]
    return None


def group_traces(spans: Iterable[TraceSpan]) -> dict[str, list[TraceSpan]]:
    """Spans by trace id, each trace's spans ordered by start time."""
    traces: dict[str, list[TraceSpan]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    for members in traces.values():
        members.sort(key=lambda s: (s.start_ns, s.span_id))
    return traces


def summarize(trace_id: str, spans: list[TraceSpan]) -> TraceSummary:
    """The listing entry of one trace (``spans`` ordered by start time)."""
    ids = {s.span_id for s in spans}
    root = next((s for s in spans if not s.parent_id or s.parent_id not in ids), spans[0])
    return TraceSummary(
        trace_id=trace_id,
        root=root,
        spans=len(spans),
        services=tuple(sorted({s.service for s in spans})),
        start_ns=spans[0].start_ns,
        end_ns=max(s.end_ns for s in spans),
    )


def list_traces(
    directory: str | Path | None = None, *, services: Iterable[str] = (), since_ns: int | None = None
) -> list[TraceSummary]:
    """Every trace under ``directory`` that crossed all of ``services``, oldest first; with
    ``since_ns``, only spans that started then or later (files last written before are not read)."""
    wanted = set(services)
    files = trace_files(directory)
    if since_ns is not None:
        files = [f for f in files if f.stat().st_mtime_ns >= since_ns]
    summaries = [
        summarize(trace_id, spans)
        for trace_id, spans in group_traces(read_spans(files, since_ns=since_ns)).items()
    ]
    return sorted((s for s in summaries if wanted <= set(s.services)), key=lambda s: (s.start_ns, s.trace_id))


def find_trace(directory: str | Path | None, trace_id: str) -> list[TraceSpan]:
    """The spans of the one trace whose id is or starts with ``trace_id``, ordered by start time."""
    trace_id = trace_id.strip().lower()
    if len(trace_id) < 4 or any(c not in "0123456789abcdef" for c in trace_id):
        raise TracingError(f"{trace_id!r} is not a trace id; give its 32 hex digits or a prefix of 4 or more")
    files = trace_files(directory)
    traces = group_traces(read_spans(files, trace_id=trace_id))
    if not traces:
        where = files[0].parent if files else "the trace directory"
        raise TracingError(
            f"no trace {trace_id} in {where}; see `tickbus trace list` (spans are written a few seconds "
            "after they end, and at the latest when the process stops)"
        )
    if len(traces) > 1:
        matches = ", ".join(printable(t, 64) for t in sorted(traces))
        raise TracingError(f"{trace_id!r} matches {len(traces)} traces ({matches}); give more digits")
    return next(iter(traces.values()))


# -- rendering ------------------------------------------------------------------------------------
def render_trace(spans: list[TraceSpan]) -> list[str]:
    """An indented timeline of one trace: offset and duration in ms, who, span, kind, key attributes."""
    if not spans:
        return []
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[TraceSpan]] = {}
    roots = []
    for span in spans:
        if span.parent_id and span.parent_id in by_id:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)
    origin = spans[0].start_ns
    end = max(s.end_ns for s in spans)
    services = sorted({s.service for s in spans})
    lines = [
        f"trace {printable(spans[0].trace_id, 64)}: {len(spans)} spans from {len(services)} services "
        f"({', '.join(printable(s) for s in services)}) over {(end - origin) / 1e6:.3f} ms",
        f"{'start ms':>10} {'dur ms':>8}  span",
    ]

    def walk(span: TraceSpan, lead: str, branch: str) -> None:
        lines.append(
            f"{(span.start_ns - origin) / 1e6:>10.3f} {span.duration_ns / 1e6:>8.3f}  "
            f"{lead}{branch}{printable(span.who)}: {printable(span.name)} [{printable(span.kind, 32)}]"
            f"{_details(span, by_id)}"
        )
        kids = children.get(span.span_id, [])
        below = lead + ("   " if branch in ("└─ ", "") else "│  ")
        for index, child in enumerate(kids):
            walk(child, below, "└─ " if index == len(kids) - 1 else "├─ ")

    for root in roots:
        walk(root, "", "")
    return lines


def _details(span: TraceSpan, by_id: Mapping[str, TraceSpan]) -> str:
    attributes = span.attributes
    parts = []
    destination = attributes.get("messaging.destination.name")
    if destination is not None:
        parts.append(f"dest={printable(str(destination))}")
    if "tickbus.handler" in attributes:
        parts.append(f"handler={printable(str(attributes['tickbus.handler']))}")
    if "messaging.message.id" in attributes:
        parts.append(f"msg={printable(str(attributes['messaging.message.id']))}")
    if attributes.get("tickbus.skipped"):
        parts.append("skipped (no subscriber)")
    for trace_id, span_id in span.links:
        if span_id == span.parent_id and trace_id == span.trace_id:
            parts.append("link=parent")
        elif span_id in by_id:
            parts.append(f"link={printable(by_id[span_id].who)}:{printable(by_id[span_id].name)}")
        else:
            parts.append(f"link={printable(trace_id[:8])}/{printable(span_id, 64)}")
    if span.parent_id and span.parent_id not in by_id:
        parts.append(f"(parent {printable(span.parent_id, 64)} not in the files)")
    if span.error is not None:
        parts.append(f"ERROR {printable(span.error, 500)}")
    return "  " + "  ".join(parts) if parts else ""


def render_list(summaries: list[TraceSummary]) -> list[str]:
    """One line per trace: start time, id, span count, duration, services and root span."""
    services = [printable(",".join(s.services)) for s in summaries]
    width = max((len(text) for text in services), default=8)
    lines = [f"{'started':<23} {'trace id':<32} {'spans':>5} {'ms':>9}  {'services':<{width}}  root"]
    for summary, crossed in zip(summaries, services, strict=True):
        seconds, ns = divmod(summary.start_ns, 1_000_000_000)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f".{ns // 1_000_000:03d}"
        root = summary.root
        lines.append(
            f"{started:<23} {printable(summary.trace_id, 64):<32} {summary.spans:>5} "
            f"{(summary.end_ns - summary.start_ns) / 1e6:>9.3f}  {crossed:<{width}}  "
            f"{printable(root.who)}: {printable(root.name)}"
        )
    return lines
