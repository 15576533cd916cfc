"""OTLP JSON pieces the span and metric line encoders share (:mod:`._span_json`, :mod:`._metric_json`).

The OTLP/JSON mapping as ``opentelemetry-exporter-otlp-json-file`` writes it: attribute values as
``AnyValue`` objects, 64-bit integers as strings, empty fields left out. String attribute pairs, and
each distinct resource and scope, are encoded once and reused.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

json_encoder = msgspec.json.Encoder()  # ~8x json.dumps here; writes UTF-8 as is (json.dumps escapes it)


def any_value(value: Any) -> dict[str, Any]:  # noqa: PLR0911 -- one return per OTLP value type
    """One attribute value as an OTLP ``AnyValue``; ``TypeError`` for a type OTLP cannot carry."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        if math.isinf(value):
            return {"doubleValue": "Infinity" if value > 0 else "-Infinity"}
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("utf-8") if value else ""}
    if isinstance(value, Sequence):
        values = [any_value(v) for v in value]
        return {"arrayValue": {"values": values} if values else {}}
    if isinstance(value, Mapping):
        pairs = [{"key": str(k), "value": any_value(v)} for k, v in value.items()]
        return {"kvlistValue": {"values": pairs} if pairs else {}}
    raise TypeError(f"Invalid type {type(value)} of value {value}")


# Encoded string attributes, reused: most values repeat from span to span (the messaging system, the
# operation, the actor, a key's destination), and a pair costs ~0.2 us to build and encode. Bounded
# (cleared when full); ids, unique per span by design, are never kept.
_PAIRS: dict[tuple[str, str], msgspec.Raw] = {}
MAX_PAIRS = 4096
_UNIQUE = frozenset({"messaging.message.id"})


def attributes_list(attributes: Mapping[str, Any] | None) -> list[Any]:
    encoded: list[Any] = []
    for key, value in (attributes or {}).items():
        if type(value) is str and key and key not in _UNIQUE:
            pair = _PAIRS.get((key, value))
            if pair is None:
                if len(_PAIRS) >= MAX_PAIRS:
                    _PAIRS.clear()
                pair = msgspec.Raw(json_encoder.encode({"key": key, "value": {"stringValue": value}}))
                _PAIRS[(key, value)] = pair
            encoded.append(pair)
            continue
        try:
            encoded.append({"key": key, "value": any_value(value)} if key else {"value": any_value(value)})
        except TypeError:  # left out, as the library does (the SDK admits no such value anyway)
            continue
    return encoded


class Encoded:
    """Resource and scope encodings (JSON text), each made once per distinct object (a process has
    one or two)."""

    def __init__(self) -> None:
        self._resources: dict[int, tuple[Any, str]] = {}
        self._scopes: dict[int, tuple[Any, str]] = {}

    def resource(self, resource: Any) -> str:
        held = self._resources.get(id(resource))
        if held is None or held[0] is not resource:
            attributes = attributes_list(resource.attributes)
            held = (resource, json_encoder.encode({"attributes": attributes} if attributes else {}).decode())
            if len(self._resources) >= 64:
                self._resources.clear()
            self._resources[id(resource)] = held
        return held[1]

    def scope(self, scope: Any) -> str:
        held = self._scopes.get(id(scope))
        if held is None or held[0] is not scope:
            out: dict[str, Any] = {}
            if scope is not None:
                if scope.name:
                    out["name"] = scope.name
                if scope.version:
                    out["version"] = scope.version
                if attributes := attributes_list(scope.attributes):
                    out["attributes"] = attributes
            held = (scope, json_encoder.encode(out).decode())
            if len(self._scopes) >= 64:
                self._scopes.clear()
            self._scopes[id(scope)] = held
        return held[1]


def schema_member(held: Any) -> str:
    """A resource's or scope's ``schemaUrl`` member, with its comma, if it has one."""
    url = getattr(held, "schema_url", None)
    return ',"schemaUrl":' + json_encoder.encode(url).decode() if url else ""


def attributes_json(attributes: Mapping[str, Any] | None) -> str:
    """``attributes`` as the JSON text of an OTLP ``KeyValue`` list."""
    return json_encoder.encode(attributes_list(attributes)).decode()
