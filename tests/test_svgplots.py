"""Tests of the SVG charts: well-formed XML, one mark per point, escaped names, gaps and error bars."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from cnncodes.svgplots import PALETTE, line_chart_svg, scatter_svg

SVG = "{http://www.w3.org/2000/svg}"


def _parse(text: str) -> ElementTree.Element:
    root = ElementTree.fromstring(text)
    assert root.tag == f"{SVG}svg" and int(root.get("width")) > 0 and int(root.get("height")) > 0
    return root


def test_scatter_one_dot_per_point_marked_on_top() -> None:
    """Check that each point is one dot of its group's colour, marked points come last, and names are escaped."""
    points = [(0.0, 0.0), (1.0, 1.0), (2.0, 0.5), (3.0, 3.0)]
    text = scatter_svg(points, [0, 1, 0, 1], ["ants", "<b>ees"], [True, False, False, False])
    root = _parse(text)
    circles = root.findall(f"{SVG}circle")
    assert len(circles) == 4 + 2 + 1  # the points, a legend dot per group, the legend of the marked points
    dots = circles[:4]
    assert [c.get("fill") for c in dots] == [PALETTE[1], PALETTE[0], PALETTE[1], PALETTE[0]]  # the marked one last
    assert dots[-1].get("stroke") == "#000" and dots[0].get("stroke") is None
    assert [t.text for t in root.findall(f"{SVG}text")] == ["ants", "<b>ees", "misclassified"]
    xs = [float(c.get("cx")) for c in dots[:3]]
    assert xs == sorted(xs)  # x order kept: 1, 2, 3 of the unmarked points


def test_scatter_without_marks_has_no_marked_legend() -> None:
    """Check that a map with nothing marked says nothing about marks, and an empty one still is an image."""
    assert "misclassified" not in scatter_svg([(0, 0), (1, 1)], [0, 0], ["all images"])
    assert len(_parse(scatter_svg([], [], ["a"])).findall(f"{SVG}circle")) == 1


def test_line_chart_gaps_error_bars_and_reference() -> None:
    """Check that a missing value leaves a gap, spreads draw bars, and the reference is a dashed line."""
    text = line_chart_svg(
        ["stage3", "stage4", "penultimate"],
        [("logistic", [0.7, None, 0.9], [0.05, None, None]), ("linear-svm", [0.6, 0.8, 0.85], [None, None, None])],
        "balanced accuracy",
        ("raw pixels", 0.55),
    )
    root = _parse(text)
    lines = root.findall(f"{SVG}polyline")
    assert [len(line.get("points").split()) for line in lines] == [2, 3]
    assert len(root.findall(f"{SVG}circle")) == 5
    dashed = [line for line in root.findall(f"{SVG}line") if line.get("stroke-dasharray")]
    assert len(dashed) == 2  # the reference line and its legend
    bars = [
        line
        for line in root.findall(f"{SVG}line")
        if line.get("x1") == line.get("x2") and line.get("stroke") == PALETTE[0]
    ]
    assert len(bars) == 1
    labels = [t.text for t in root.findall(f"{SVG}text")]
    assert labels.index("stage3") < labels.index("stage4") < labels.index("penultimate")
    assert "raw pixels 0.550" in labels and "logistic" in labels
