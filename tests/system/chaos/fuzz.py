"""Fuzzed multipart messages, each malformed by construction, with the reason a hub must give.

Problem: 100,000 hypothesis examples one by one take minutes. Approach: hypothesis generates, once
and derandomized, a few hundred *templates* (arbitrary msgpack arrays in place of the six-field header,
single header fields replaced by values of the wrong type or range, payload values); a seeded
``random.Random`` combines them at scale with random bytes. Every message keeps the subscribed prefix
``load\\0`` in its first frame, so the broker forwards it to the fuzzed actor, and is checked against
the public decoders (:func:`actors.decode_key`, :func:`actors.decode_header`,
:func:`actors.decode_payload`): a template that happens to be valid is made invalid before use, so the
expected count of rejects is exact.
"""

from __future__ import annotations

import random
import socket
from collections import Counter
from collections.abc import Iterator

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import EnvelopeError, InvalidKeyError, decode_header, decode_key, decode_payload, encode_header

PREFIX = b"load\x00"
KEY = b"load\x00fuzz\x00"
PUBLISHER = f"fuzz@{socket.gethostname()}:1:00000000"
OVERSIZE = 1024 * 1024 + 1  # one byte over the hubs' default max_payload (the broker passes up to 2 MiB)

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(min_value=-(2**31), max_value=2**31), max_size=2),
)


def _collect(strategy: st.SearchStrategy[object], count: int) -> list[object]:
    """``count`` derandomized examples of ``strategy`` (hypothesis's engine, run once)."""
    out: list[object] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(value: object) -> None:
        out.append(value)

    draw()
    return out


def templates() -> tuple[list[bytes], list[bytes]]:
    """(invalid headers, payload values packed) drawn by hypothesis."""
    valid = [1, PUBLISHER, 1, 1, 1, None]
    arrays = _collect(st.lists(_VALUES, max_size=8), 200)
    swaps = _collect(st.tuples(st.integers(min_value=0, max_value=5), _VALUES), 300)
    versions = _collect(st.integers(min_value=-(2**31), max_value=2**31).filter(lambda v: v != 1), 50)
    headers: list[bytes] = []
    for fields in [*arrays, *([*valid[:i], v, *valid[i + 1 :]] for i, v in swaps)]:  # type: ignore[misc]
        headers.append(msgpack.packb(fields, use_bin_type=True))
    headers += [msgpack.packb([v, *valid[1:]]) for v in versions]  # wrong format versions
    headers = [h for h in headers if not _decodes(decode_header, h)]
    payloads = [msgpack.packb(v, use_bin_type=True) for v in _collect(_VALUES, 100)]
    return headers, payloads


def _decodes(decoder: object, data: bytes) -> bool:
    try:
        decoder(data)  # type: ignore[operator]
    except (EnvelopeError, InvalidKeyError):
        return False
    return True


def downstream(count: int, seed: int = 3) -> Iterator[tuple[str, list[bytes]]]:
    """``count`` (reason, frames) messages for the broker's frontend, every one malformed."""
    rng = random.Random(seed)
    headers, payloads = templates()
    seq = 0

    def good_header() -> bytes:
        nonlocal seq
        seq += 1  # a well-formed stream of its own: no sequence anomaly is counted against it
        return encode_header(PUBLISHER, seq, 1, 1)

    for i in range(count):
        shape = i % 5
        if shape == 0:  # a frame count other than 3
            n = rng.choice((1, 2, 4, 5, 7))
            frames = [
                PREFIX + rng.randbytes(rng.randrange(8)),
                *(rng.randbytes(rng.randrange(20)) for _ in range(n - 1)),
            ]
            yield "frames", frames
        elif shape == 1:  # a key frame that is not NUL-terminated UTF-8
            key = PREFIX + rng.randbytes(rng.randrange(1, 12))
            if _decodes(decode_key, key):
                key += b"\xff"
            yield "key", [key, encode_header(PUBLISHER, 1, 1, 1), rng.choice(payloads)]
        elif shape == 2:  # a corrupt header: hypothesis templates, truncations, random bytes
            header = rng.choice(headers)
            cut = rng.random()
            if cut < 0.3:
                header = encode_header(PUBLISHER, 1, 1, 1)[: rng.randrange(1, 20)]
            elif cut < 0.4:
                header = rng.randbytes(rng.randrange(24))
            if _decodes(decode_header, header):
                header = b"\xc1" + header
            yield "header", [KEY, header, rng.choice(payloads)]
        else:  # a corrupt payload under a valid key and header
            payload = rng.choice(payloads)
            cut = rng.random()
            if cut < 0.4 and len(payload) > 1:
                payload = payload[: rng.randrange(1, len(payload))]
            elif cut < 0.7:
                payload = payload + rng.randbytes(rng.randrange(1, 6))
            else:
                payload = b"\xc1" + rng.randbytes(rng.randrange(16))
            if _decodes(decode_payload, payload):
                payload = b"\xc1" + payload
            yield "payload", [KEY, good_header(), payload]
    for _ in range(2):
        yield "oversize", [KEY, good_header(), b"\x00" * OVERSIZE]


def upstream(count: int, seed: int = 5) -> list[bytes]:
    """``count`` single frames for the broker's backend that are not (un)subscriptions."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        frame = rng.randbytes(rng.randrange(1, 24))
        if frame[0] in (0, 1):
            frame = bytes([frame[0] + 2]) + frame[1:]
        out.append(frame)
    return out


def reasons(messages: list[tuple[str, list[bytes]]]) -> Counter[str]:
    """How many messages of each reason."""
    return Counter(reason for reason, _ in messages)
