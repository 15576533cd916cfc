"""Alerts: the JSON line, the log, the bus, a real webhook (and a dead one), the OpenTelemetry metric."""

from __future__ import annotations

import contextlib
import http.server
import inspect
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

import observability
from actors.testing import free_tcp_port
from observability._alert_counters import AlertCounters
from observability.profiling._alerts import AlertDispatcher, alert_record, definition_line, function_location
from observability.profiling._detection import Regression
from tests.system.profiling import model_actor

MODEL_FILE = str(Path(model_actor.__file__).resolve())
REQUIRED = {"time", "host", "pid", "actor", "version", "function", "baseline_share", "current_share"}
REQUIRED |= {"relative_change", "confidence", "windows", "state"}


def regression(state: str = "active", function: str = f"{MODEL_FILE}:Model.score_signal") -> Regression:
    return Regression(
        state=state,  # type: ignore[arg-type]
        host="h",
        group="model",
        actors=("model",),
        pid=42,
        version="1.2",
        baseline_version="1.2",
        function=function,
        kind="self",
        baseline_share=0.30,
        current_share=0.36,
        relative_change=0.2,
        confidence=0.9999,
        p_value=1e-7,
        windows=2,
        baseline_windows=30,
        since=1000.0,
        at=1004.0,
    )


def test_the_record_names_the_function_with_its_file_and_definition_line():
    record = alert_record(regression(), now=5.0)
    assert set(record) >= REQUIRED
    line = inspect.getsourcelines(model_actor.Model.score_signal)[1]
    assert record["function"] == {"name": "Model.score_signal", "file": MODEL_FILE, "line": line}
    assert record["actor"] == "model" and record["pid"] == 42 and record["relative_change"] == 0.2
    json.dumps(record)  # JSON-able


def test_locations_of_unknown_or_odd_labels_are_line_zero():
    assert definition_line("/no/such/file.py", "f") == 0
    assert function_location("<no Python frames>") == {"name": "<no Python frames>", "file": "", "line": 0}
    assert function_location(f"{MODEL_FILE}:Model.nothing_like_this")["line"] == 0


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP server on loopback collecting POSTed JSON."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_each_event_goes_to_the_file_the_log_the_bus_and_the_webhook(tmp_path, webhook):
    url, received = webhook
    published: list[dict] = []
    counters = AlertCounters()
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        dispatcher = AlertDispatcher(
            tmp_path / "alerts.jsonl",
            webhook=url,
            publish=published.append,
            counters=counters,
        )
        dispatcher.handle([regression()])
        dispatcher.handle([regression("resolved")])
        await dispatcher.drain()
    finally:
        logger.remove(sink)
    records = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [r["state"] for r in records] == ["active", "resolved"]
    assert [r["actor"] for r in published] == ["model"] * 2
    assert [r["state"] for r in received] == ["active", "resolved"]
    assert received[0]["function"]["name"] == "Model.score_signal"
    assert any(line.startswith("profile regression: Model.score_signal") for line in lines)
    assert any(line.startswith("profile regression resolved") for line in lines)
    assert (counters.raised, counters.resolved, counters.active, counters.webhook_sent) == (1, 1, 0, 2)


async def test_a_dead_webhook_is_counted_and_logged_once_and_nothing_else_stops(tmp_path):
    counters = AlertCounters()
    errors: list[str] = []
    sink = logger.add(lambda m: errors.append(m.record["message"]), level="ERROR")
    try:
        dead = f"http://127.0.0.1:{free_tcp_port()}/hook"
        dispatcher = AlertDispatcher(tmp_path / "alerts.jsonl", webhook=dead, counters=counters, timeout=2)
        dispatcher.handle([regression(), regression(function=f"{MODEL_FILE}:Model.compute_features")])
        await dispatcher.drain()
    finally:
        logger.remove(sink)
    assert counters.webhook_failures == 2 and counters.raised == 2
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 2
    assert len([e for e in errors if "webhook" in e]) == 1, errors


@pytest.fixture
def raw_server() -> Iterator[tuple[str, threading.Event]]:
    """A TCP server that is not HTTP: it answers garbage, or nothing at all once ``hang`` is set."""
    import socket

    hang = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if hang.is_set():
                held.append(conn)  # never answered: the client times out
            else:
                with conn:
                    conn.recv(65536)
                    conn.sendall(b"hello there\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook", hang
    finally:
        with contextlib.suppress(OSError):  # wakes the accept (a close alone leaves the thread in it)
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
        for conn in held:
            conn.close()


async def test_a_webhook_that_does_not_speak_http_is_counted_as_failed(tmp_path, raw_server):
    url, _ = raw_server
    counters = AlertCounters()
    dispatcher = AlertDispatcher(tmp_path / "alerts.jsonl", webhook=url, counters=counters, timeout=2)
    dispatcher.handle([regression()])
    await dispatcher.drain()
    assert (counters.webhook_failures, counters.webhook_sent) == (1, 0)


async def test_posts_to_a_hanging_webhook_are_bounded_and_drain_does_not_wait_for_each(tmp_path, raw_server):
    import time

    from observability.profiling._alerts import MAX_WEBHOOK_POSTS

    url, hang = raw_server
    hang.set()
    counters = AlertCounters()
    dispatcher = AlertDispatcher(tmp_path / "alerts.jsonl", webhook=url, counters=counters, timeout=1)
    dispatcher.handle([regression() for _ in range(MAX_WEBHOOK_POSTS + 20)])
    assert counters.webhook_failures == 20  # over the bound: failed at once, not queued
    start = time.monotonic()
    await dispatcher.drain(timeout=0.5)
    assert time.monotonic() - start < 5  # not 100 posts x 1 s
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == MAX_WEBHOOK_POSTS + 20


def test_an_unwritable_alerts_file_is_counted_and_logged(tmp_path):
    counters = AlertCounters()
    blocker = tmp_path / "file"
    blocker.write_text("")
    AlertDispatcher(blocker / "alerts.jsonl", counters=counters).handle([regression()])
    assert counters.file_failures == 1 and counters.raised == 1


def test_the_alerts_file_rotates_and_keeps_a_bounded_number_of_rotated_files(tmp_path, monkeypatch):
    from observability.profiling import _alerts

    # it grew without bound before: one line per alert raised or resolved, never rotated
    monkeypatch.setattr(_alerts, "ALERTS_ROTATION", observability.Rotation(max_bytes=4_000, keep=3, max_age_days=0))
    path = tmp_path / "alerts.jsonl"
    dispatcher = AlertDispatcher(path, counters=AlertCounters())
    try:
        for _ in range(40):
            dispatcher.handle([regression(), regression("resolved")])
    finally:
        dispatcher.close()
    rotated = observability.rotated_files(path)
    assert len(rotated) == 3  # the newest three rotated files, whatever their age
    assert all(file.stat().st_size <= 4_000 for file in [*rotated, path])
    kept = [json.loads(line) for file in [*rotated, path] for line in file.read_text().splitlines()]
    assert 0 < len(kept) < 80 and [r["state"] for r in kept[-2:]] == ["active", "resolved"]


def test_alerts_are_exported_as_opentelemetry_metrics(tmp_path):
    from observability._alert_counters import profile_alerts

    before = (profile_alerts.raised, profile_alerts.active)
    path = tmp_path / "metrics.jsonl"
    observability.metrics.enable("alerts-test", otlp_file=path)
    try:
        AlertDispatcher(None).handle([regression()])
        assert observability.metrics.flush()
    finally:
        observability.metrics.disable()
        profile_alerts.raised, profile_alerts.active = before
    points = {}
    for line in path.read_text().splitlines():
        for rm in json.loads(line)["resourceMetrics"]:
            for sm in rm["scopeMetrics"]:
                for metric in (m for m in sm["metrics"] if m["name"].startswith("tickbus.profile.")):
                    data = metric.get("sum") or metric.get("gauge") or {}
                    for point in data.get("dataPoints", []):
                        attrs = {a["key"]: a["value"]["stringValue"] for a in point.get("attributes", [])}
                        points[(metric["name"], attrs.get("tickbus.alert.state"))] = int(point["asInt"])
    assert points[("tickbus.profile.alerts", "active")] == before[0] + 1
    assert points[("tickbus.profile.alerts.active", None)] == before[1] + 1
