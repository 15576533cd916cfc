"""``observability.printable``: peer-chosen text with every control character shown as an escape, cut
to a length, so that nothing a peer names can drive the terminal that prints it."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from observability import printable


def test_control_characters_and_del_become_visible_escapes() -> None:
    assert printable("\x1b[2Jgone") == "\\x1b[2Jgone"
    assert printable("\x1b]8;;https://evil.example\x07ok\x1b]8;;\x07") == (
        "\\x1b]8;;https://evil.example\\x07ok\\x1b]8;;\\x07"
    )
    assert printable("a\nb\tc\rd\x00e\x7ff") == "a\\x0ab\\x09c\\x0dd\\x00e\\x7ff"
    assert printable("\x9b31m csi") == "\\x9b31m csi"  # C1: the one-byte CSI
    assert printable("abc\u202edcba") == "abc\\u202edcba"  # right-to-left override
    assert printable("naïve [bold]µs 東京") == "naïve [bold]µs 東京"  # printable text is left alone


def test_long_text_is_cut_to_the_limit_with_a_mark() -> None:
    assert printable("x" * 10, 10) == "x" * 10
    assert printable("x" * 11, 10) == "x" * 9 + "…"
    assert printable("\x1b" * 10, 10) == "\\x1b\\x1b\\…"  # escapes count as what they show
    assert printable("abc", 0) == ""
    assert len(printable("y" * 10_000_000)) == 200


@given(st.text(), st.integers(min_value=0, max_value=300))
def test_no_control_character_survives_and_the_limit_holds(text: str, limit: int) -> None:
    shown = printable(text, limit)
    assert len(shown) <= limit
    assert not any(unicodedata.category(c) == "Cc" for c in shown)
    if len(text) <= limit and text.isprintable():
        assert shown == text
