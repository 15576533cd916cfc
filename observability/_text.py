"""Peer-chosen text made safe to print on a terminal: :func:`printable`.

Problem: names that come from the wire or from files other processes wrote (group, host and version
names from a hello, keys, publisher ids, span names, exception texts) end up in terminal output. An
ESC in one (``\\x1b[2J``, an OSC-8 link ``\\x1b]8;;...``) is obeyed by the terminal, a newline forges
a line, and rich's ``Text`` strips only BEL, BS, VT, FF and CR.

Approach: every C0 control character, DEL and every C1 control character becomes the escape repr()
would print (``\\x1b``), as do the Unicode bidirectional overrides and isolates (``\\u202e``), which
reorder what is shown; the result is cut to ``limit`` characters, ``…`` marking the cut.
"""

from __future__ import annotations

_ESCAPES: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({c: f"\\u{c:04x}" for c in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))})
_ELLIPSIS = "…"


def printable(s: str, limit: int = 200) -> str:
    """``s`` with control characters shown as escapes (``\\x1b``), at most ``limit`` characters long.

    For any peer-chosen string before it is printed or put into a rich ``Text``: C0 and C1 control
    characters and DEL (newline and tab too) become ``\\xNN``, the bidirectional overrides ``\\uNNNN``;
    a longer result is cut to ``limit - 1`` characters followed by ``…``. Only the first ``limit + 1``
    characters of ``s`` are read, so a huge string costs no more than a short one.
    """
    if limit <= 0:
        return ""
    text = s[: limit + 1].translate(_ESCAPES)
    if len(text) <= limit:
        return text
    return text[: limit - 1] + _ELLIPSIS
