"""The HTML report: a differential flame graph of two profiles in one self-contained file.

The graph is the *after* profile laid out as a flame graph (root at the bottom, width = samples),
each frame coloured by how its inclusive share changed from *before*: red grew, blue shrank, grey
unchanged or too small to tell (Brendan Gregg's differential flame graphs). Hovering a frame shows
its function, file, both shares and the change. It is inline SVG computed here, with a table of the
largest changes and the alerts the report is about: no script, stylesheet or font is fetched when
the file is opened, so it can be mailed or attached to a ticket.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._views import diff, format_change, significance_legend, split_label
from ._windows import FRAME_SEPARATOR, ProfileWindow

WIDTH = 1200.0
ROW = 17.0
MIN_WIDTH = 0.4  # px: narrower frames are left out


@dataclass
class Node:
    """One frame of the merged call tree: its samples after and before, and its children."""

    name: str
    after: int = 0
    before: int = 0
    children: dict[str, Node] = field(default_factory=dict)

    def child(self, name: str) -> Node:
        """The child frame ``name``, created when missing."""
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = Node(name)
        return node


def call_tree(before: ProfileWindow, after: ProfileWindow) -> Node:
    """Both profiles folded into one tree (``after``/``before`` counts per node, inclusive)."""
    root = Node("all")
    for window, side in ((after, "after"), (before, "before")):
        for stack, count in window.stacks.items():
            node = root
            setattr(root, side, getattr(root, side) + count)
            for label in stack.split(FRAME_SEPARATOR):
                node = node.child(label)
                setattr(node, side, getattr(node, side) + count)
    return root


def colour(before_share: float, after_share: float) -> str:
    """Red for growth, blue for shrinkage (relative to the larger share), grey in between."""
    scale = max(before_share, after_share)
    if scale <= 0:
        return "rgb(220,220,220)"
    delta = (after_share - before_share) / scale  # -1 .. 1
    strength = min(1.0, abs(delta) * 3)
    if abs(delta) < 0.02:
        return "rgb(220,220,220)"
    fade = int(220 - 150 * strength)
    return f"rgb(240,{fade},{fade})" if delta > 0 else f"rgb({fade},{fade},240)"


def _frames(root: Node) -> tuple[list[str], int]:
    """The SVG elements of the tree (after-widths) and its depth."""
    total_a = root.after or 1
    total_b = root.before or 1
    out: list[str] = []
    depth_max = 0

    def walk(node: Node, x: float, depth: int) -> None:
        nonlocal depth_max
        depth_max = max(depth_max, depth)
        width = WIDTH * node.after / total_a
        a_share, b_share = node.after / total_a, node.before / total_b
        file, function = split_label(node.name)
        change = "new" if not node.before else f"{a_share / b_share - 1:+.1%}" if b_share else "-"
        tip = (
            f"{function} ({file})\nafter {a_share:.2%}, before {b_share:.2%}, change {change}"
            if file
            else f"{function}\nafter {a_share:.2%}, before {b_share:.2%}"
        )
        out.append(
            f'<g class="f" data-depth="{depth}"><title>{html.escape(tip)}</title>'
            f'<rect x="{x:.2f}" y="{{y{depth}}}" width="{width:.2f}" height="{ROW - 1:.0f}" '
            f'fill="{colour(b_share, a_share)}"/>'
        )
        if width > 35:
            chars = int((width - 6) / 7)
            text = function if len(function) <= chars else function[: max(0, chars - 2)] + ".."
            out.append(f'<text x="{x + 3:.2f}" y="{{t{depth}}}">{html.escape(text)}</text>')
        out.append("</g>")
        offset = x
        for child in sorted(node.children.values(), key=lambda n: n.name):
            child_width = WIDTH * child.after / total_a
            if child_width >= MIN_WIDTH:
                walk(child, offset, depth + 1)
            offset += child_width

    walk(root, 0.0, 0)
    return out, depth_max


def flame_svg(before: ProfileWindow, after: ProfileWindow) -> str:
    """The differential flame graph as one ``<svg>`` element."""
    elements, depth = _frames(call_tree(before, after))
    height = (depth + 1) * ROW + 4
    text = "\n".join(elements)
    for d in range(depth + 1):  # root at the bottom
        y = height - (d + 1) * ROW - 2
        text = text.replace(f"{{y{d}}}", f"{y:.0f}").replace(f"{{t{d}}}", f"{y + ROW - 5:.0f}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH:.0f} {height:.0f}" font-family="monospace" font-size="11">\n{text}\n</svg>'
    )


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
td, th { padding: 2px 8px; text-align: right; border-bottom: 1px solid #eee; }
td:last-child, th:last-child { text-align: left; font-family: monospace; }
.alert { background: #fff1f0; border-left: 4px solid #d33; padding: 6px 10px; margin: 6px 0; }
svg .f:hover rect { stroke: #000; stroke-width: 0.7; }
.legend span { padding: 1px 8px; margin-right: 6px; }
"""


def render_report(
    before: ProfileWindow,
    after: ProfileWindow,
    *,
    title: str,
    before_name: str,
    after_name: str,
    alerts: Sequence[dict[str, Any]] = (),
    limit: int = 25,
    before_windows: Sequence[ProfileWindow] = (),
) -> str:
    """The whole HTML page (see the module docstring); ``before_windows`` (the before side unmerged)
    let the table tell significant changes from sampling noise as ``tickbus profile diff`` does."""
    esc = html.escape
    rows = []
    shown = diff(before, after, before_windows=before_windows)[:limit]
    for r in shown:
        rows.append(
            f"<tr><td>{r.before_self:.2%}</td><td>{r.after_self:.2%}</td><td>{esc(format_change(r))}</td>"
            f"<td>{r.before_samples}&rarr;{r.after_samples}</td><td>{r.before_inclusive:.2%}</td><td>{r.after_inclusive:.2%}</td><td>{esc(r.function)}</td></tr>"
        )
    alert_html = []
    for a in alerts:
        fn = a.get("function", {})
        relative = a.get("relative_change")
        alert_html.append(
            f'<div class="alert"><b>{esc(str(a.get("state", "")))}</b> {esc(str(fn.get("name", "")))} '
            f"({esc(str(fn.get('file', '')))}:{fn.get('line', 0)}) in actor {esc(str(a.get('actor', '')))} "
            f"version {esc(str(a.get('version', '') or '-'))}: share {a.get('baseline_share', 0):.2%} -&gt; "
            f"{a.get('current_share', 0):.2%} ({'new' if relative is None else f'{relative:+.1%}'}), "
            f"confidence {a.get('confidence', 0):.4f}, {a.get('windows', 0)} window(s), detected "
            f"{esc(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(a.get('detected_at', 0)))))}</div>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{esc(title)}</h1>
<p>before: {esc(before_name)} ({before.samples} samples, {before.handled_total} messages handled)<br>
after: {esc(after_name)} ({after.samples} samples, {after.handled_total} messages handled)</p>
{"".join(alert_html)}
<h2>Differential flame graph</h2>
<p class="legend">width: samples after; colour: inclusive share
<span style="background:rgb(240,70,70)">grew</span>
<span style="background:rgb(70,70,240);color:#fff">shrank</span>
<span style="background:rgb(220,220,220)">unchanged</span> (hover a frame for numbers)</p>
{flame_svg(before, after)}
<h2>Largest changes (self share)</h2>
<table><tr><th>self before</th><th>self after</th><th>change</th><th>self samples</th><th>incl. before</th>
<th>incl. after</th><th>function</th></tr>
{"".join(rows)}
</table>
<p>{esc(significance_legend(shown, len(before_windows)))}</p>
</body></html>
"""
