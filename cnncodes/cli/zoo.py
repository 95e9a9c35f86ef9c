"""Commands of the backbone zoo: models, models fetch, layers, export."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

import cnncodes
from cnncodes.export import EXPORTABLE  # names only: the exporter imports torch when it runs

from .options import format_option, library_errors, library_option
from .render import emit_json, table
from .root import cli


@cli.group(invoke_without_command=True)
@format_option("table", "json")
@click.pass_context
@library_errors
def models(context: click.Context, output_format: str) -> None:
    """List the backbone zoo: input size, taps with dimensions, local presence, license.

    \b
    Example:
        cnncodes models
        cnncodes models --format json
    """
    if context.invoked_subcommand is not None:
        return
    rows = cnncodes.list_models()
    if output_format == "json":
        emit_json([row.as_dict() for row in rows])
        return
    headers = ["name", "input", "default", "taps", "present", "license"]
    click.echo(
        table(
            headers,
            [
                [
                    r.name,
                    r.input_size,
                    f"{r.default_tap} ({r.taps[r.default_tap]})",
                    ", ".join(f"{k}:{v}" for k, v in r.taps.items()),
                    "yes" if r.present else "no",
                    r.license.split(" ")[0],
                ]
                for r in rows
            ],
        )
    )


@models.command("fetch")
@click.argument("name")
@library_errors
def models_fetch(name: str) -> None:
    """Download a zoo model whose card gives a URL, checking its sha256.

    \b
    Example:
        cnncodes models fetch some_model
    """
    click.echo(f"{name}: {cnncodes.fetch_model(name)}")


def _layer_table(rows: Sequence[Any]) -> str:
    if rows and rows[0].shape is not None:  # any ONNX file: its tensors with inferred shapes
        return table(
            ["tensor", "shape", "channels"], [[r.tensor, "x".join(map(str, r.shape or ())), r.channels] for r in rows]
        )
    return table(
        ["layer", "tensor", "channels", "spatial", "stride", "non-negative", "relu"],
        [
            [
                r.name,
                r.tensor,
                r.channels,
                f"{r.size}x{r.size}" if r.size else "-",
                r.stride or "-",
                "yes" if r.non_negative else "no",
                "yes" if r.relu else "no",
            ]
            for r in rows
        ],
    )


@cli.command()
@click.argument("model")
@format_option("table", "json")
@library_errors
def layers(model: str, output_format: str) -> None:
    """List the taps of a zoo MODEL, or the tensors of any .onnx file.

    \b
    Example:
        cnncodes layers efficientnet_lite0
        cnncodes layers path/to/model.onnx
    """
    rows = cnncodes.list_layers(model)
    if output_format == "json":
        emit_json([row.as_dict() for row in rows])
    else:
        click.echo(_layer_table(rows))


@cli.command()
@click.argument("name", type=click.Choice(sorted(EXPORTABLE)), metavar="NAME")
@library_option(
    "--weights",
    library=("export_model", "weights"),
    help="'imagenet' (torchvision's weights, downloaded), 'random', or a .pth path or URL.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="ONNX file to write. [default: the models folder]",
)
@library_errors
def export(name: str, weights: str, output: Path | None) -> None:
    """Export a torchvision model to ONNX with its taps (needs cnncodes[export]).

    NAME is one of the zoo's torchvision models (source torchvision in 'cnncodes models').

    \b
    Example:
        cnncodes export resnet50
        cnncodes export vgg16 --weights ~/vgg16-397923af.pth
    """
    path, card = cnncodes.export_model(name, weights=weights, path=output)
    click.echo(f"{name}: {path} (taps: {', '.join(t['name'] for t in card['taps'])})")
