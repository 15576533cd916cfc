"""OTLP in tests: reading exported metric lines, and a collector on loopback receiving OTLP/HTTP."""

from __future__ import annotations

import contextlib
import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


def sum_by_attribute(line: dict[str, Any], name: str) -> dict[str, int]:
    """The data points of the sum ``name`` in one exported line, by their first attribute's value."""
    points = [
        p
        for rm in line["resourceMetrics"]
        for sm in rm["scopeMetrics"]
        for m in sm["metrics"]
        if m["name"] == name
        for p in m["sum"]["dataPoints"]
    ]
    return {p["attributes"][0]["value"]["stringValue"]: int(p["asInt"]) for p in points}


@dataclass
class Collector:
    """What :func:`otlp_collector` received: each request as (path, content type, decoded JSON body)."""

    url: str  # http://127.0.0.1:<port>, no path
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)  # set at each request
    status: int = 200  # the answer to the next requests


@contextlib.contextmanager
def otlp_collector() -> Iterator[Collector]:
    """A real HTTP server on loopback that keeps every POST (gzip bodies decompressed) and answers
    ``collector.status`` with ``{}``; shut down on leaving."""
    collector: Collector

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            collector.requests.append((self.path, self.headers["Content-Type"], json.loads(body)))
            collector.arrived.set()
            self.send_response(collector.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = HTTPServer(("127.0.0.1", 0), Handler)
    collector = Collector(f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
