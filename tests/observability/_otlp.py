"""Reading OTLP JSON metric lines in tests."""

from __future__ import annotations

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
