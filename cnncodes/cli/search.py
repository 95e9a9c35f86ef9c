"""Commands that search the codes: classify, similar, duplicates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

import cnncodes
from cnncodes import params

from .options import code_options, declared_option, format_option, library_errors, library_option, run_options
from .render import as_inputs, echo_failures, exit_if_failed, is_quiet, render_predictions, table
from .root import cli


def _split_code_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(code options set on the command line, run options); unset code options defer to a codes file's own."""
    context = click.get_current_context()
    given = {
        name: options[name]
        for name in params.CODE_PARAMETERS
        if context.get_parameter_source(name) != click.core.ParameterSource.DEFAULT
    }
    return given, {name: value for name, value in options.items() if name not in params.CODE_PARAMETERS}


def _search_progress(output_format: str) -> bool | None:
    return False if output_format != "table" or is_quiet() else None


def _echo_result(result: Any, text: str) -> None:
    """The failures on stderr, the rendered result on stdout, and exit code 3 if some images failed."""
    echo_failures(result.failures)
    click.echo(text)
    exit_if_failed(result.failures)


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@declared_option("model")
@library_option("--top-k", library=("classify", "top_k"), type=click.IntRange(min=1), help="Classes per image.")
@run_options
@format_option("table", "csv", "json")
@library_errors
def classify(images: tuple[Path, ...], model: str, top_k: int, output_format: str, **options: Any) -> None:
    """Name what the backbone sees: its own top ImageNet classes with probabilities.

    \b
    Example:
        cnncodes classify photo.jpg more_photos/ --top-k 3
        cnncodes classify photo.jpg --format json
    """
    result = cnncodes.classify(
        list(images), model=model, top_k=top_k, **options, progress=_search_progress(output_format)
    )
    _echo_result(result, render_predictions(result, output_format))


def _render_neighbors(result: Any, output_format: str) -> str:
    if output_format == "json":
        return json.dumps(result.as_dict())
    rows = [
        (query, rank, path, score) for query, found in result.results for rank, (path, score) in enumerate(found, 1)
    ]
    if output_format == "csv":
        lines = [f"{json.dumps(q)},{rank},{json.dumps(p)},{s:.6f}" for q, rank, p, s in rows]
        return "\n".join(["query,rank,path,score", *lines])
    return table(["query", "rank", "similar image", "cosine"], [[q, rank, p, f"{s:.3f}"] for q, rank, p, s in rows])


@cli.command()
@click.argument("index", type=click.Path(exists=True, path_type=Path))
@click.argument("queries", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@library_option("--top-k", library=("similar", "top_k"), type=click.IntRange(min=1), help="Neighbours per query.")
@library_option(
    "--whiten",
    library=("similar", "whiten"),
    type=click.IntRange(min=1),
    help="PCA-whiten the codes to this many components (fitted on the index).",
)
@click.option("--power", is_flag=True, help="Signed square root of the codes before L2 (power normalization).")
@library_option(
    "--method",
    library=("similar", "method"),
    type=click.Choice(("exact", "faiss")),
    help="Exact cosine search, or faiss' approximate index (needs cnncodes[faiss]).",
)
@code_options
@run_options
@format_option("table", "csv", "json")
@library_errors
def similar(index: Path, queries: tuple[Path, ...], output_format: str, **options: Any) -> None:
    """Find the images of INDEX most similar to each QUERY image (cosine of their codes).

    INDEX is a codes file written by 'extract' (its feature set is used for the queries), a
    folder or a CSV; QUERIES are images, folders or a CSV. Code options must match the index.

    \b
    Example:
        cnncodes similar codes.h5 photo.jpg --top-k 3
        cnncodes similar photos/ query_photos/ --format json
    """
    features, run = _split_code_options(options)  # run: the search options (top_k, whiten, ...) and run options
    result = cnncodes.similar(
        index, as_inputs(queries), features=features, **run, progress=_search_progress(output_format)
    )
    _echo_result(result, _render_neighbors(result, output_format))


def _render_groups(result: Any, output_format: str) -> str:
    if output_format == "json":
        return json.dumps(result.as_dict())
    rows = [(number, path) for number, group in enumerate(result.groups, 1) for path in group]
    if output_format == "csv":
        return "\n".join(["group,path", *(f"{number},{json.dumps(path)}" for number, path in rows)])
    return table(["group", "path"], rows)


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@library_option(
    "--threshold",
    library=("find_duplicates", "threshold"),
    type=click.FloatRange(0, 1, min_open=True),
    help="Contrast of two images' code similarity over each one's background from which they are one photo.",
)
@code_options
@run_options
@format_option("table", "csv", "json")
@library_errors
def duplicates(data: tuple[Path, ...], threshold: float, output_format: str, **options: Any) -> None:
    """Group near-duplicate images: the same bytes, re-encodes, resizes, crops, brightness edits, small rotations.

    DATA is a folder, a CSV, image files, or a codes file written by 'extract'. Only groups of
    two or more are listed; a summary line goes to stderr.

    \b
    Example:
        cnncodes duplicates photos/
        cnncodes duplicates photos/ --threshold 0.5 --format json
    """
    features, run = _split_code_options(options)
    result = cnncodes.find_duplicates(
        as_inputs(data), threshold=threshold, features=features, **run, progress=_search_progress(output_format)
    )
    n_grouped = sum(len(group) for group in result.groups)
    click.echo(
        f"{result.n_images} images, {len(result.groups)} groups of near-duplicates ({n_grouped} images)", err=True
    )
    _echo_result(result, _render_groups(result, output_format))
