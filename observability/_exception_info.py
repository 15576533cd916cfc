"""An exception as an operator needs it: type, message and where it happened, the user's code first.

Problem: a handler's exception surfaces through asyncio, the actor's consume loop and tickbus's own
frames; the full traceback (loguru's, with variables: 77 lines for one ``KeyError``) buries the two
lines that matter, and an enqueued loguru sink sees no traceback at all (a record crosses the queue
pickled, its traceback dropped), so JSON lines said ``"KeyError: 'px'"`` and nothing of where.

Approach: :func:`exception_fields` turns an exception into plain data while its traceback is still
there (the logging patcher calls it on the thread that logs, for records with an exception only):
``type``, ``message``, ``stack`` (innermost first: the user's frames, then the innermost few of the
rest, each ``file``, ``line``, ``function``, ``user``), ``frames`` (how many the traceback had) and
``cause`` (the exception it was raised from, the same way). A *user* frame is one outside the
standard library, installed packages and tickbus's own packages. :func:`exception_text` is the
terminal's few lines; :func:`describe_exception` the one-line ``KeyError: 'px' (model.py:16 in
lookup)`` for messages.

Limits: frames of a user's module installed into site-packages count as library frames (they are
still listed when no user frame is left); the cause chain is followed three deep.
"""

from __future__ import annotations

import os
import site
import sysconfig
from pathlib import Path
from types import TracebackType
from typing import Any

_LIBRARY_FRAMES = 3  # non-user frames kept after the user's (innermost first)
_USER_FRAMES = 20  # at most this many user frames (deep recursion in user code)
_CAUSE_DEPTH = 3


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(getattr(site, "getsitepackages", list)())  # some virtualenv builds of site lack them
    roots.add(getattr(site, "getusersitepackages", str)())
    home = Path(__file__).resolve().parent.parent  # tickbus's own packages live side by side
    roots.update(str(home / package) for package in ("actors", "broker", "observability", "tickbus"))
    return tuple(os.path.join(os.path.realpath(root), "") for root in roots if root)


_ROOTS = _library_roots()
_CWD = os.path.join(os.getcwd(), "")


def is_user_file(filename: str) -> bool:
    """True for a source file of the user's code (not the standard library, a package or tickbus)."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    return not os.path.realpath(filename).startswith(_ROOTS)


def _frames(tb: TracebackType | None) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append(
            {
                "file": code.co_filename,
                "line": tb.tb_lineno,
                "function": code.co_name,
                "user": is_user_file(code.co_filename),
            }
        )
        tb = tb.tb_next
    frames.reverse()  # innermost first
    return frames


def _type_name(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"


def exception_fields(
    error: BaseException, tb: TracebackType | None = None, *, _depth: int = 0
) -> dict[str, Any]:
    """``error`` as plain data (JSON-ready): type, message, compact stack (user frames first), cause.

    ``tb`` defaults to ``error.__traceback__``.
    """
    frames = _frames(tb if tb is not None else error.__traceback__)
    user = [f for f in frames if f["user"]][:_USER_FRAMES]
    rest = [f for f in frames if not f["user"]][:_LIBRARY_FRAMES]
    fields: dict[str, Any] = {
        "type": _type_name(type(error)),
        "message": str(error),
        "stack": user + rest,
        "frames": len(frames),
    }
    if isinstance(error, SyntaxError) and error.filename:  # where the parser stopped: no frame says it
        fields["file"], fields["line"] = error.filename, error.lineno
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if cause is not None and _depth < _CAUSE_DEPTH:
        fields["cause"] = exception_fields(cause, _depth=_depth + 1)
    return fields


def _short(filename: str) -> str:
    return filename[len(_CWD) :] if filename.startswith(_CWD) else filename


def _where(frame: dict[str, Any]) -> str:
    return f"{_short(frame['file'])}:{frame['line']} in {frame['function']}"


def exception_text(fields: dict[str, Any], indent: str = "  ") -> str:
    """A few lines for a terminal: ``Type: message``, then ``at file:line in function`` for the
    user's frames (the innermost library frames when there is none), and the cause likewise."""
    lines: list[str] = []
    while True:
        lines.append(f"{indent}{fields['type']}: {fields['message']}")
        stack = fields["stack"]
        shown = [f for f in stack if f["user"]] or stack
        lines.extend(f"{indent}  at {_where(f)}" for f in shown)
        hidden = fields["frames"] - len(shown)
        if hidden > 0:
            noun = "frame" if hidden == 1 else "frames"
            lines.append(f"{indent}  ({hidden} {noun} of tickbus, asyncio and libraries not shown)")
        cause = fields.get("cause")
        if cause is None:
            return "\n".join(lines)
        fields = cause
        indent += "  "
        lines.append(f"{indent[:-2]}caused by:")


def describe_exception(error: BaseException) -> str:
    """One line: ``KeyError: 'px' (model.py:16 in lookup)``: the innermost user frame of the deepest
    exception in ``error``'s cause chain that has one (else ``error``'s innermost frame with a source
    file, if any)."""
    fields = exception_fields(error)
    where: dict[str, Any] | None = None
    layer: dict[str, Any] | None = fields
    while layer is not None:  # the root cause's place is where it broke
        where = next((f for f in layer["stack"] if f["user"]), where)
        layer = layer.get("cause")
    if where is None and not isinstance(error, SyntaxError):  # a SyntaxError's own text says where
        where = next((f for f in fields["stack"] if not f["file"].startswith("<")), None)
    text = f"{fields['type']}: {fields['message']}" if fields["message"] else fields["type"]
    return f"{text} ({_where(where)})" if where is not None else text
