"""The demo's profiling collector: its command line, and the top functions per actor it found."""

from __future__ import annotations

from pathlib import Path

from ._processes import tickbus_command

READY_PREFIX = "tickbus profiler ready"  # the line `tickbus profiler` prints once subscribed

__all__ = ["READY_PREFIX", "profiler_command", "top_lines"]


def profiler_command(
    frontend: str, backend: str, data_dir: Path, seconds: float, hz: float = 100.0
) -> list[str]:
    """``tickbus profiler`` for the demo, sampling at ``hz``: windows short enough that a short run
    fills a few."""
    window = max(1.0, min(10.0, seconds / 4))
    return [
        *tickbus_command(),
        "profiler",
        "--frontend",
        frontend,
        "--backend",
        backend,
        "--window",
        f"{window:g}",
        "--interval-us",
        str(round(1e6 / hz)),
        "--data-dir",
        str(data_dir),
    ]


def top_lines(
    data_dir: Path, groups: list[str], since: float, limit: int = 3, hz: float = 100.0
) -> list[str]:
    """The summary's profile lines: each group's top functions by self share over its windows of
    this run (ending after ``since``), leaving out the event loop's idle wait."""
    from observability import ProfilerError
    from observability.profiling import IDLE_FUNCTIONS, ProfileStore, merge_windows, short_function

    path = data_dir / "profiles.sqlite"
    lines = [f"  profiles             Austin at {hz:g} Hz into {path}"]
    try:
        with ProfileStore(path, create=False) as store:
            for group in groups:
                summaries = [s for s in store.summaries(actor=group) if s.start >= since - 60]
                windows = [w for w in store.load([s.id for s in summaries]) if w.end >= since]
                if not windows:
                    lines.append(f"    {group:<18} no windows")
                    continue
                merged = merge_windows(windows)
                busy = [
                    s for s in merged.function_shares() if not any(i in s.function for i in IDLE_FUNCTIONS)
                ]
                top = ", ".join(f"{s.self_share:.0%} {short_function(s.function)}" for s in busy[:limit])
                lines.append(f"    {group:<18} {merged.samples} samples: {top}")
    except ProfilerError as exc:
        lines.append(f"    none: {exc}")
    lines.append(f"  see more with         tickbus profile top --actor model --data-dir {data_dir}")
    return lines
