"""The CURVE allow-list loader reads only regular key files (issue 11, part)."""

from __future__ import annotations

import os

from broker import generate_keys, load_public_key
from broker._auth import load_allow_list


def test_a_fifo_named_like_a_key_is_ignored_instead_of_blocking_the_broker(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    public, _ = generate_keys("client", tmp_path)
    (allowed / "client.key").write_bytes(public.read_bytes())
    os.mkfifo(allowed / "x.key")  # opening this for reading would block until a writer comes
    (allowed / "huge.key").write_bytes(b"#" * (1 << 20))
    assert load_allow_list(allowed) == {load_public_key(public)}
