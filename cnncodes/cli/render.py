"""What the commands print: tables, JSON, failure lines, and exit code 3 when some inputs failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import click

EXIT_SOME_FAILED = 3  # the run finished, but some inputs have no codes


def as_inputs(data: tuple[Path, ...]) -> Path | list[Path]:
    """One argument as itself (a folder keeps its class labels), several as a list."""
    return data[0] if len(data) == 1 else list(data)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=str))


def echo_failures(failures: Sequence[tuple[str, str]]) -> None:
    for path, reason in failures:
        click.echo(f"failed: {path}: {reason}", err=True)


def exit_if_failed(failures: Sequence[Any]) -> None:
    if failures:
        click.get_current_context().exit(EXIT_SOME_FAILED)


def is_quiet() -> bool:
    """Whether ``cnncodes --quiet`` was given (no progress line either)."""
    return bool(click.get_current_context().find_root().params.get("quiet"))


def render_predictions(result: Any, output_format: str) -> str:
    if output_format == "json":
        top = [{"path": p.path, "top": [{"class": c, "score": s} for c, s in p.top]} for p in result.predictions]
        return json.dumps({"score": result.score_kind, "predictions": top})
    if output_format == "csv":
        lines = [
            f"{json.dumps(p.path)},{rank},{json.dumps(c)},{s:.6f}"
            for p in result.predictions
            for rank, (c, s) in enumerate(p.top, 1)
        ]
        return "\n".join(["path,rank,class,score", *lines])
    rows = [[p.path, *(f"{c} {s:.3f}" for c, s in p.top)] for p in result.predictions]
    n_top = len(rows[0]) - 1 if rows else 1
    return table(["path", *(f"top {i} ({result.score_kind})" for i in range(1, n_top + 1))], rows)
