"""Reading OTLP JSON trace files back: lookup by id prefix, listing, the timeline, ``tickbus trace``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import observability
from observability import read_spans, render_list, trace_files
from tickbus._cli import main

T1 = "4bf92f3577b34da6a3ce929d0e0e4736"
T2 = "4bf9aaaa77b34da6a3ce929d0e0e4736"
BASE = 1_780_000_000_000_000_000


def attr(key: str, value: Any) -> dict[str, Any]:
    kind = "intValue" if isinstance(value, int) and not isinstance(value, bool) else "stringValue"
    return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}


def span(
    trace: str, sid: str, parent: str, name: str, kind: int, *, start_us: int, dur_us: int, **extra: Any
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "traceId": trace,
        "spanId": sid,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(BASE + start_us * 1000),
        "endTimeUnixNano": str(BASE + (start_us + dur_us) * 1000),
        "attributes": [attr(k, v) for k, v in extra.get("attributes", {}).items()],
        "status": extra.get("status", {}),
    }
    if parent:
        raw["parentSpanId"] = parent
        raw["links"] = [{"traceId": trace, "spanId": parent, "flags": 257}]
    return raw


def line(service: str, *spans: dict[str, Any]) -> str:
    resource = {"attributes": [attr("service.name", service), attr("process.pid", 42)]}
    request = {
        "resourceSpans": [
            {"resource": resource, "scopeSpans": [{"scope": {"name": "tickbus"}, "spans": list(spans)}]}
        ]
    }
    return json.dumps(request) + "\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Two processes' files: a feed -> model trace (T1), and a lone span of another trace (T2)."""
    folder = tmp_path / "traces"
    folder.mkdir()
    feed = {
        "tickbus.actor": "feed",
        "messaging.destination.name": "tick/AAPL",
        "messaging.message.id": "feed@h:1:ab:7",
    }
    model = {
        "tickbus.actor": "quant",
        "messaging.destination.name": "tick/AAPL",
        "tickbus.handler": "Model.on_tick",
    }
    (folder / "feed-1.jsonl").write_text(
        line("feed", span(T1, "a" * 16, "", "publish tick", 4, start_us=0, dur_us=20, attributes=feed))
        + line("feed", span(T2, "d" * 16, "", "publish status", 4, start_us=5000, dur_us=10))
    )
    (folder / "model-2.jsonl").write_text(
        line(
            "model",
            span(T1, "b" * 16, "a" * 16, "process tick", 5, start_us=300, dur_us=200, attributes=model),
            span(
                T1,
                "c" * 16,
                "b" * 16,
                "publish state",
                4,
                start_us=350,
                dur_us=50,
                status={"code": 2, "message": "boom"},
            ),
            span(T1, "e" * 16, "f" * 16, "process late", 5, start_us=900, dur_us=10),
        )
        + '{"resourceSpans": [{"truncated'  # a process killed mid-write
    )
    return tmp_path


def test_a_trace_is_found_by_a_unique_prefix_across_files(data: Path):
    spans = observability.find_trace(data, T1[:8].upper())
    assert [s.name for s in spans] == ["publish tick", "process tick", "publish state", "process late"]
    assert {s.service for s in spans} == {"feed", "model"}
    assert spans[1].links == ((T1, "a" * 16),) and spans[1].parent_id == "a" * 16


def test_an_ambiguous_a_missing_and_a_malformed_trace_id_are_refused(data: Path):
    with pytest.raises(observability.TracingError, match="matches 2 traces"):
        observability.find_trace(data, "4bf9")
    with pytest.raises(observability.TracingError, match=r"no trace 0123abcd in .*tickbus trace list"):
        observability.find_trace(data, "0123abcd")
    with pytest.raises(observability.TracingError, match="not a trace id"):
        observability.find_trace(data, "xyz!")


def test_a_missing_trace_directory_says_how_to_get_one(tmp_path: Path):
    with pytest.raises(
        observability.TracingError, match=r"no trace directory .*traces; run actors with tracing on"
    ):
        trace_files(tmp_path)


def test_the_timeline_nests_children_under_parents_with_offsets_links_and_errors(data: Path):
    lines = observability.render_trace(observability.find_trace(data, T1))
    assert lines[0] == f"trace {T1}: 4 spans from 2 services (feed, model) over 0.910 ms"
    assert lines[2] == "     0.000    0.020  feed: publish tick [PRODUCER]  dest=tick/AAPL  msg=feed@h:1:ab:7"
    assert lines[3] == (
        "     0.300    0.200     └─ model/quant: process tick [CONSUMER]  dest=tick/AAPL  handler=Model.on_tick  link=parent"
    )
    assert (
        lines[4] == "     0.350    0.050        └─ model: publish state [PRODUCER]  link=parent  ERROR boom"
    )
    assert lines[5].startswith("     0.900    0.010  model: process late [CONSUMER]  link=")
    assert lines[5].endswith(f"(parent {'f' * 16} not in the files)")


def test_the_listing_shows_each_trace_with_its_root_and_filters_by_service(data: Path):
    summaries = observability.list_traces(data)
    assert [(s.trace_id, s.spans, s.services, s.root.name) for s in summaries] == [
        (T1, 4, ("feed", "model"), "publish tick"),
        (T2, 1, ("feed",), "publish status"),
    ]
    assert [s.trace_id for s in observability.list_traces(data, services=["model"])] == [T1]
    assert [s.trace_id for s in observability.list_traces(data, since_ns=BASE + 1_000_000)] == [T2]
    listing = render_list(summaries)
    assert listing[1].split()[2:6] == [T1, "4", "0.910", "feed,model"]
    assert listing[1].endswith("feed: publish tick")


def test_a_truncated_last_line_is_skipped(data: Path):
    assert len(list(read_spans(trace_files(data)))) == 5


def test_tickbus_trace_show_and_list_print_and_exit_zero(data: Path, capsys):
    assert main(["trace", "show", T1[:12], "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "feed: publish tick [PRODUCER]" in out and "model/quant: process tick [CONSUMER]" in out
    assert main(["trace", "list", "--data-dir", str(data), "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and T2 in out[1]


def test_tickbus_trace_show_names_the_problem_and_exits_two(tmp_path: Path, capsys):
    assert main(["trace", "show", T1, "--data-dir", str(tmp_path)]) == 2
    assert "tickbus trace: no trace directory" in capsys.readouterr().err


def test_peer_chosen_span_text_reaches_the_terminal_as_escapes_never_as_control_codes(tmp_path: Path, capsys):
    folder = tmp_path / "traces"
    folder.mkdir()
    hostile = {
        "tickbus.actor": "act\x1b[8m",
        "messaging.destination.name": "tick/\x1b]8;;https://evil.example\x07AAPL\x1b]8;;\x07",
        "messaging.message.id": "feed@h\x1b[2J:1:ab:7",
        "tickbus.handler": "On.\x9btick",
    }
    (folder / "x-1.jsonl").write_text(
        line(
            "svc\x1b[1A",
            span(T1, "a" * 16, "", "process \x1b[2Jtick", 5, start_us=0, dur_us=5, attributes=hostile),
            span(
                T1,
                "b" * 16,
                "a" * 16,
                "publish\nforged line",
                4,
                start_us=1,
                dur_us=1,
                status={"code": 2, "message": "boom \x1b]0;title\x07" + "x" * 5000},
            ),
        )
    )
    assert main(["trace", "show", T1, "--data-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert main(["trace", "list", "--data-dir", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    for out in (shown, listed):
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in out), repr(out)
        assert "svc\\x1b[1A/act\\x1b[8m: process \\x1b[2Jtick" in out
    lines = shown.splitlines()
    assert len(lines) == 4  # the newline in a span name forges no line
    assert "dest=tick/\\x1b]8;;https://evil.example\\x07AAPL" in lines[2]
    assert "msg=feed@h\\x1b[2J:1:ab:7" in lines[2] and "handler=On.\\x9btick" in lines[2]
    assert "publish\\x0aforged line [PRODUCER]" in lines[3]
    assert "ERROR boom \\x1b]0;title\\x07xxx" in lines[3] and lines[3].endswith("x…")
    assert len(lines[3]) < 1000  # the error text is cut
