"""Fuzzed messages, each malformed by construction, with the reason a hub must give.

Envelope format 2: a message is one frame ``key 0xff header payload`` (see ``broker._envelope``).
Most fuzzed messages are single frames broken in their key, header or payload; some are multi-frame
(format-1 three-frame messages and random frame sets), which a hub counts under ``frames``.

Problem: 100,000 hypothesis examples one by one take minutes. Approach: hypothesis generates, once
and derandomized, a few hundred *templates* (binary headers with one fixed field, the publisher id or
the trace context replaced by a drawn value, payload values); a seeded ``random.Random`` combines
them at scale with random bytes. Every message starts with the subscribed prefix ``load\\0``, so the
broker forwards it to the fuzzed actor, and is checked against the public decoders
(:func:`broker.decode_message`, :func:`actors.decode_key`, :func:`actors.decode_payload`): a message
that happens to be valid is made invalid before use, so the expected count of rejects is exact.
"""

from __future__ import annotations

import random
import socket
from collections import Counter
from collections.abc import Iterator

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import EnvelopeError, InvalidKeyError, decode_key, decode_payload, encode_header
from broker import FIXED, FORMAT_VERSION, KEY_END, decode_message, encode_message

PREFIX = b"load\x00"
KEY = b"load\x00fuzz\x00"
PUBLISHER = f"fuzz@{socket.gethostname()}:1:00000000"
OVERSIZE = 1024 * 1024 + 1  # one byte over the hubs' default max_payload (the broker passes up to 2 MiB)
_FIELD_RANGES = ((0, 255), (0, 255), (0, 255), (0, 2**64 - 1), (-(2**63), 2**63 - 1), (-(2**63), 2**63 - 1))

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


def _header(fields: list[int], publisher: bytes, trace: bytes | None = None) -> bytes:
    """Header bytes laid out as format 2 does, whatever the fields say (``trace``: the raw context)."""
    out = FIXED.pack(*fields) + publisher
    if trace is not None:
        out += len(trace).to_bytes(2, "little") + trace
    return out


def templates() -> tuple[list[bytes], list[bytes]]:
    """(headers, payload values packed) drawn by hypothesis; a header may still happen to be valid,
    so :func:`downstream` checks each message it builds."""
    pub = PUBLISHER.encode()
    valid = [FORMAT_VERSION, 0, len(pub), 1, 1, 1]
    field = st.integers(min_value=0, max_value=5).flatmap(
        lambda i: st.tuples(st.just(i), st.integers(*_FIELD_RANGES[i]))
    )
    headers: list[bytes] = []
    for i, v in _collect(field, 300):  # type: ignore[misc]
        headers.append(_header([*valid[:i], v, *valid[i + 1 :]], pub))
    for raw in _collect(st.binary(max_size=24), 100):  # publisher ids, often not UTF-8
        headers.append(_header([*valid[:2], len(raw), *valid[3:]], raw))  # type: ignore[arg-type]
    for value in _collect(_VALUES, 100):  # trace contexts that are not [traceparent, tracestate]
        headers.append(_header([FORMAT_VERSION, 1, *valid[2:]], pub, msgpack.packb(value, use_bin_type=True)))
    headers += [_header([FORMAT_VERSION, 1, *valid[2:]], pub, b"\xc1")]  # a context that is not msgpack
    # format 1's msgpack header where format 2's binary one belongs
    headers += [msgpack.packb([v, PUBLISHER, 1, 1, 1, None]) for v in (1, 2, 3)]
    payloads = [msgpack.packb(v, use_bin_type=True) for v in _collect(_VALUES, 100)]
    return headers, payloads


def _decodes(decoder: object, data: bytes) -> bool:
    try:
        decoder(data)  # type: ignore[operator]
    except (EnvelopeError, InvalidKeyError):
        return False
    return True


def _no_key_end(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size).replace(KEY_END, b"\xfe")


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
        if shape == 0:  # more than one frame: format 1's three, or a random set
            if rng.random() < 0.3:
                old = msgpack.packb([1, PUBLISHER, rng.randrange(1, 1000), 1, 1, None])
                yield "frames", [KEY, old, rng.choice(payloads)]
                continue
            # The first frame has no key end: a hub reads a first frame that does as a whole message
            # and the frames after it as messages of their own (see test_malformed_traffic's xfail).
            n = rng.choice((2, 3, 4, 5, 7))
            frames = [
                PREFIX + _no_key_end(rng, rng.randrange(8)),
                *(rng.randbytes(rng.randrange(20)) for _ in range(n - 1)),
            ]
            yield "frames", frames
        elif shape == 1:  # no key end at all, or a key before it that is not NUL-terminated UTF-8
            if rng.random() < 0.3:
                yield "key", [PREFIX + _no_key_end(rng, rng.randrange(40))]
                continue
            key = PREFIX + _no_key_end(rng, rng.randrange(1, 12))
            if _decodes(decode_key, key):
                key += rng.choice((b"x", b"\x80\x00"))  # unterminated, or not UTF-8
            frame = encode_message(key, encode_header(PUBLISHER, 1, 1, 1), rng.choice(payloads))
            yield "key", [frame]
        elif shape == 2:  # a corrupt header: hypothesis templates, truncations, random bytes
            header = rng.choice(headers)
            cut = rng.random()
            if cut < 0.3:
                header = encode_header(PUBLISHER, 1, 1, 1)[: rng.randrange(0, FIXED.size)]
            elif cut < 0.4:
                header = rng.randbytes(rng.randrange(40))
            payload = rng.choice(payloads) if rng.random() < 0.5 else b""
            frame = encode_message(KEY, header, payload)
            if _decodes(decode_message, frame):  # valid after all (or with the payload's bytes)
                frame = encode_message(KEY, b"\x01" + header[1:], payload)  # format version 1
            yield "header", [frame]
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
            yield "payload", [encode_message(KEY, good_header(), payload)]
    for _ in range(2):
        yield "oversize", [encode_message(KEY, good_header(), b"\x00" * OVERSIZE)]


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
