"""SVG charts for the report pages: a scatter of the code map and a line chart per tap (standard library only)."""

from __future__ import annotations

import html
import math
from typing import Sequence

__all__ = ["PALETTE", "scatter_svg", "line_chart_svg"]

# matplotlib's tab10, then tab20's light tones: distinct colours for up to 20 classes, then they repeat
PALETTE = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf "
    "#aec7e8 #ffbb78 #98df8a #ff9896 #c5b0d5 #c49c94 #f7b6d2 #c7c7c7 #dbdb8d #9edae5"
).split()
_FONT = 'font-family="system-ui,sans-serif" font-size="13"'


def _svg(width: int, height: int, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>\n"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {_FONT}{extra}>{html.escape(text)}</text>'


def _legend_line(x: float, y: float, style: str) -> str:
    return f'<line x1="{x:.1f}" x2="{x + 26:.1f}" y1="{y:.1f}" y2="{y:.1f}" {style}/>'


def _scale(values: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """(offset, factor) mapping the range of ``values`` onto low..high, with a 4 % margin."""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.04 * span, hi + 0.04 * span
    return lo, (high - low) / (hi - lo)


def scatter_svg(
    points: Sequence[tuple[float, float]],
    groups: Sequence[int],
    group_names: Sequence[str],
    marked: Sequence[bool] | None = None,
    marked_name: str = "misclassified",
) -> str:
    """A scatter plot: one colour per group, a legend, and marked points drawn as black-ringed crosses.

    Parameters
    ----------
    points : sequence of (x, y)
        Positions, any scale.
    groups : sequence of int
        Index into ``group_names`` of each point.
    group_names : sequence of str
        The legend (escaped).
    marked : sequence of bool or None, default=None
        Points to mark (e.g. mistakes), drawn on top.
    marked_name : str, default="misclassified"
        The legend entry of the marked points.

    Returns
    -------
    str
        An SVG document: a 560 px square plot, the legend on its right.

    Examples
    --------
    >>> svg = scatter_svg([(0, 0), (1, 2)], [0, 1], ["ants", "<bees>"], [False, True])
    >>> svg.startswith("<svg"), svg.count("<circle"), "&lt;bees&gt;" in svg
    (True, 5, True)
    """
    size, legend_w = 560, 190
    marked = list(marked) if marked is not None else [False] * len(points)
    body = []
    if points:
        x0, fx = _scale([p[0] for p in points], 12, size - 12)
        y0, fy = _scale([p[1] for p in points], 12, size - 12)
        radius = 4.5 if len(points) < 500 else 3.0 if len(points) < 3000 else 2.0
        for flag in (False, True):  # marked points last, so no dot hides them
            for (x, y), group, is_marked in zip(points, groups, marked):
                if is_marked != flag:
                    continue
                cx, cy = 12 + (x - x0) * fx, size - 12 - (y - y0) * fy
                colour = PALETTE[group % len(PALETTE)]
                if is_marked:
                    body.append(
                        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius + 2.5:.1f}" fill="{colour}" '
                        'stroke="#000" stroke-width="1.6"/>'
                        f'<path d="M{cx - 3:.1f} {cy - 3:.1f}l6 6m0 -6l-6 6" stroke="#000" stroke-width="1.4"/>'
                    )
                else:
                    body.append(
                        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="{colour}" fill-opacity="0.8"/>'
                    )
    body.append(f'<rect x="0.5" y="0.5" width="{size - 1}" height="{size - 1}" fill="none" stroke="#d8dde6"/>')
    y = 24.0
    for i, name in enumerate(group_names):
        body.append(f'<circle cx="{size + 18}" cy="{y - 4:.1f}" r="6" fill="{PALETTE[i % len(PALETTE)]}"/>')
        body.append(_text(size + 30, y, name))
        y += 22
    if any(marked):
        body.append(f'<circle cx="{size + 18}" cy="{y - 4:.1f}" r="7" fill="#fff" stroke="#000" stroke-width="1.6"/>')
        body.append(f'<path d="M{size + 15} {y - 7:.1f}l6 6m0 -6l-6 6" stroke="#000" stroke-width="1.4"/>')
        body.append(_text(size + 30, y, marked_name))
    return _svg(size + legend_w, max(size, int(y) + 10), body)


def line_chart_svg(
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], Sequence[float | None]]],
    y_label: str,
    reference: tuple[str, float] | None = None,
) -> str:
    """Lines of scores over categories (e.g. taps, earliest first), with error bars where a spread is known.

    Parameters
    ----------
    x_labels : sequence of str
        The categories along the x axis.
    series : sequence of (name, values, spreads)
        One line each; a None value is a gap, a None spread draws no bar.
    y_label : str
        What the values are.
    reference : (str, float) or None, default=None
        A dashed horizontal line and its name (e.g. the raw-pixel baseline).

    Returns
    -------
    str
        An SVG document: 90 px per category, 300 px high, the legend on the right.

    Examples
    --------
    >>> svg = line_chart_svg(["stage3", "stage4"], [("logistic", [0.8, 0.9], [0.05, None])], "accuracy", ("raw", 0.6))
    >>> svg.count("<circle"), svg.count("stroke-dasharray"), "stage4" in svg
    (2, 2, True)
    """
    left, top, plot_w, plot_h, legend_w = 64, 20, max(320, 90 * len(x_labels)), 300, 230
    values = [v for _, vs, es in series for v, e in zip(vs, es) if v is not None for v in (v - (e or 0), v + (e or 0))]
    values += [reference[1]] if reference else []
    low = math.floor(min(values, default=0.0) * 10) / 10
    high = min(1.0, math.ceil(max(values, default=1.0) * 10) / 10) if values else 1.0
    low, high = (low, high) if high > low else (high - 0.1, high)

    def ypos(v: float) -> float:
        return top + plot_h - (v - low) / (high - low) * plot_h

    def xpos(i: int, shift: float = 0.0) -> float:
        return left + (i + 0.5) * plot_w / max(len(x_labels), 1) + shift

    body = []
    for k in range(11):
        tick = low + (high - low) * k / 10
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{ypos(tick):.1f}" y2="{ypos(tick):.1f}" stroke="#eee"/>'
        )
        body.append(_text(left - 6, ypos(tick) + 4, f"{tick:.2f}", "end"))
    body.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>')
    for i, name in enumerate(x_labels):
        body.append(_text(xpos(i), top + plot_h + 18, name, "middle"))
    body.append(_text(16, top + plot_h / 2, y_label, "middle", f' transform="rotate(-90 16 {top + plot_h / 2:.1f})"'))
    legend_y = top + 14.0
    if reference is not None:
        y = ypos(reference[1])
        dash = 'stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"'
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" {dash}/>')
        body.append(_legend_line(left + plot_w + 14, legend_y - 4, dash))
        body.append(_text(left + plot_w + 46, legend_y, f"{reference[0]} {reference[1]:.3f}"))
        legend_y += 22
    for s, (name, vs, es) in enumerate(series):
        colour = PALETTE[s % len(PALETTE)]
        shift = (s - (len(series) - 1) / 2) * 7  # side by side, so the error bars of one tap do not hide each other
        known = [(xpos(i, shift), ypos(v)) for i, v in enumerate(vs) if v is not None]
        if len(known) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in known)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.2"/>')
        for i, (v, e) in enumerate(zip(vs, es)):
            if v is None:
                continue
            x = xpos(i, shift)
            if e:
                body.append(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{ypos(v - e):.1f}" y2="{ypos(v + e):.1f}" '
                    f'stroke="{colour}" stroke-width="1.5"/>'
                )
            body.append(f'<circle cx="{x:.1f}" cy="{ypos(v):.1f}" r="4" fill="{colour}"/>')
        body.append(_legend_line(left + plot_w + 14, legend_y - 4, f'stroke="{colour}" stroke-width="2.2"'))
        body.append(_text(left + plot_w + 46, legend_y, name))
        legend_y += 22
    return _svg(left + plot_w + legend_w, max(top + plot_h + 34, int(legend_y)), body)
