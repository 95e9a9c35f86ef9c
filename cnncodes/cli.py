"""The command line: each command parses options, calls one library function, renders."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click

import cnncodes

__all__ = ["cli"]


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=str))


def _library_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a CnnCodesError into click's one-line 'Error: ...' and exit code 1."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except cnncodes.CnnCodesError as error:
            raise click.ClickException(str(error)) from error

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


def json_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--json``: machine output on stdout."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(function)


@click.group()
@click.version_option(cnncodes.__version__, prog_name="cnncodes")
@click.option("--quiet", "-q", is_flag=True, help="Only errors on stderr.")
def cli(quiet: bool) -> None:
    """CNN codes: frozen ImageNet backbones under ONNX Runtime + scikit-learn heads."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("cnncodes")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
@_library_errors
def models(context: click.Context, as_json: bool) -> None:
    """List the backbone zoo: input size, taps with dimensions, local presence, license.

    \b
    Example:
        cnncodes models
        cnncodes models --json
    """
    if context.invoked_subcommand is not None:
        return
    rows = cnncodes.list_models()
    if as_json:
        _emit_json([row.as_dict() for row in rows])
        return
    click.echo(_table(
        ["name", "input", "default", "taps", "present", "license"],
        [
            [r.name, r.input_size, f"{r.default_tap} ({r.taps[r.default_tap]})",
             ", ".join(f"{k}:{v}" for k, v in r.taps.items()), "yes" if r.present else "no", r.license.split(" ")[0]]
            for r in rows
        ],
    ))


@models.command("fetch")
@click.argument("name")
@_library_errors
def models_fetch(name: str) -> None:
    """Download a zoo model whose card gives a URL, checking its sha256.

    \b
    Example:
        cnncodes models fetch some_model
    """
    path = cnncodes.fetch_model(name)
    click.echo(f"{name}: {path}")


@cli.command()
@click.argument("model")
@json_option
@_library_errors
def layers(model: str, as_json: bool) -> None:
    """List the taps of a zoo MODEL, or the tensors of any .onnx file.

    \b
    Example:
        cnncodes layers efficientnet_lite0
        cnncodes layers path/to/model.onnx
    """
    rows = cnncodes.list_layers(model)
    if as_json:
        _emit_json([row.as_dict() for row in rows])
        return
    if rows and rows[0].shape is not None:
        click.echo(_table(["tensor", "shape", "channels"], [[r.tensor, "x".join(map(str, r.shape or ())), r.channels] for r in rows]))
        return
    click.echo(_table(
        ["layer", "tensor", "channels", "spatial", "stride", "non-negative", "relu"],
        [[r.name, r.tensor, r.channels, f"{r.size}x{r.size}" if r.size else "-", r.stride or "-",
          "yes" if r.non_negative else "no", "yes" if r.relu else "no"] for r in rows],
    ))


@cli.command()
@click.argument("name", type=click.Choice(sorted(cnncodes.EXPORTABLE)))
@click.option("--weights", default="imagenet", show_default=True,
              help="'imagenet' (torchvision's weights, downloaded), 'random', or a .pth path or URL.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write (default: the model directory).")
@_library_errors
def export(name: str, weights: str, output: Path | None) -> None:
    """Export a torchvision model to ONNX with its taps (needs cnncodes[export]).

    \b
    Example:
        cnncodes export resnet50
        cnncodes export vgg16 --weights ~/vgg16-397923af.pth
    """
    path, card = cnncodes.export_model(name, weights=weights, path=output)
    click.echo(f"{name}: {path} (taps: {', '.join(t['name'] for t in card['taps'])})")
