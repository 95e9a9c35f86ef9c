"""Commands of heads on codes: train, evaluate, predict, sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import cnncodes
from cnncodes import params

from .options import (
    CLASS_WEIGHTS,
    code_options,
    dask_option,
    declared_option,
    empty_as_none,
    format_option,
    values_to_try,
    library_errors,
    library_option,
    parse_params,
    report_option,
    trust_option,
    run_options,
)
from .render import as_inputs, echo_failures, emit_json, exit_if_failed, render_predictions, table
from .root import cli


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@library_option("--head", library=("train", "head"), type=click.Choice(sorted(params.HEAD_NAMES)))
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Model file (.skops)."
)
@code_options
@run_options
@library_option(
    "--cv", library=("train", "cv"), type=click.IntRange(min=2), help="Folds that choose the head's hyperparameter."
)
@click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS), default=None, help="Weigh classes by frequency.")
@click.option(
    "--param",
    "fixed_params",
    multiple=True,
    callback=parse_params,
    metavar="NAME=VALUE",
    help="Fix a head hyperparameter (as sweep reports it) instead of searching; repeat.",
)
@dask_option
@format_option("table", "json")
@library_errors
def train(
    data: tuple[Path, ...],
    head: str,
    output: Path,
    cv: int,
    class_weight: str | None,
    fixed_params: dict[str, Any] | None,
    dask_address: str | None,
    output_format: str,
    **options: Any,
) -> None:
    """Train a head on the codes of labelled images (or a codes file) and save the model.

    \b
    Example:
        cnncodes train ../shared/data/hymenoptera/train --head linear-svm -o model.skops
    """
    result = cnncodes.train(
        as_inputs(data),
        head=head,
        codes=cnncodes.CNNCodes(**options),
        cv=cv,
        class_weight=class_weight,
        output=output,
        client=dask_address,
        params=fixed_params,
    )
    echo_failures(result.failures)
    click.echo(result.summary(), err=output_format == "json")
    if output_format == "json":
        emit_json(
            {
                "output": str(result.path),
                "n_samples": result.n_samples,
                "cv_accuracy": result.cv_accuracy,
                "best_params": result.best_params,
                "failed": len(result.failures),
            }
        )


@cli.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@report_option
@run_options
@trust_option
@format_option("table", "json")
@library_errors
def evaluate(
    model_file: Path, data: tuple[Path, ...], report_dir: Path | None, output_format: str, **options: Any
) -> None:
    """Score a model on labelled images (or a codes file): accuracy, balanced accuracy, F1, confusion matrix.

    Images that cannot be decoded are listed, left out of the scores, and make the exit code 3.

    \b
    Example:
        cnncodes evaluate model.skops ../shared/data/hymenoptera/val --report report/
    """
    result = cnncodes.evaluate(model_file, as_inputs(data), report_dir=report_dir, **options)
    echo_failures(result.failures)
    if output_format == "json":
        emit_json({**result.report.as_dict(), "failed": len(result.failures)})
    else:
        click.echo(result.report.table())
    exit_if_failed(result.failures)


@cli.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@library_option("--top-k", library=("predict", "top_k"), type=click.IntRange(min=1), help="Classes per image.")
@run_options
@trust_option
@format_option("table", "csv", "json")
@library_errors
def predict(model_file: Path, images: tuple[Path, ...], top_k: int, output_format: str, **options: Any) -> None:
    """Predict the top classes of images (files or folders) with a model.

    \b
    Example:
        cnncodes predict model.skops photo.jpg more_photos/ --top-k 2 --format json
    """
    result = cnncodes.predict(model_file, list(images), top_k=top_k, **options)
    echo_failures(result.failures)
    click.echo(render_predictions(result, output_format))
    exit_if_failed(result.failures)


def _sweep_table(result: Any, show_all: bool) -> str:
    return table(result.table_headers, result.table_rows(show_all))


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@library_option("--models", "models_", library=("sweep", "models"), multiple=True, help="Backbone to try; repeat.")
@click.option(
    "--layers",
    "layer_sets",
    multiple=True,
    callback=empty_as_none,
    help="Layer set to try; repeat; 'stage4+penultimate' concatenates. [default: every stage and the default tap]",
)
@library_option(
    "--heads",
    library=("sweep", "heads"),
    multiple=True,
    type=click.Choice(sorted(params.HEAD_NAMES)),
    help="Head to try; repeat.",
)
@values_to_try("pooling", "Pooling")
@values_to_try("precision", "Network precision")
@declared_option("views")
@declared_option("decoder")
@click.option(
    "--val", type=click.Path(exists=True, path_type=Path), default=None, help="Score on this labelled split, not CV."
)
@library_option("--cv", library=("sweep", "cv"), type=click.IntRange(min=2), help="Cross-validation folds.")
@click.option("--groups", default=None, help="Regex on file names naming groups (e.g. patients) kept within one fold.")
@click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS), default=None, help="Weigh classes by frequency.")
@click.option("--no-baseline", is_flag=True, help="Skip the raw-pixel (no transfer) baseline.")
@run_options
@report_option
@click.option("--all", "show_all", is_flag=True, help="Show every hyperparameter value, not only the best of each.")
@dask_option
@format_option("table", "json")
@library_errors
def sweep(
    data: tuple[Path, ...],
    models_: tuple[str, ...],
    layer_sets: tuple[str, ...] | None,
    heads: tuple[str, ...],
    poolings: tuple[str, ...] | None,
    precisions: tuple[str, ...] | None,
    views: str,
    decoder: str,
    val: Path | None,
    cv: int,
    groups: str | None,
    class_weight: str | None,
    no_baseline: bool,
    report_dir: Path | None,
    show_all: bool,
    dask_address: str | None,
    output_format: str,
    **options: Any,
) -> None:
    """Rank every backbone x layer x head on cached codes, beside a raw-pixel baseline.

    \b
    Example:
        cnncodes sweep ../shared/data/chest_xray/train --heads logistic --heads linear-svm --class-weight balanced
        cnncodes sweep ../shared/data/hymenoptera/train --heads logistic --report sweep-report/
    """
    result = cnncodes.sweep(
        as_inputs(data),
        models=models_,
        layers=layer_sets,
        heads=heads,
        poolings=poolings,
        precisions=precisions,
        codes=cnncodes.CNNCodes(views=views, decoder=decoder, **options),
        val=val,
        cv=cv,
        groups=groups,
        class_weight=class_weight,
        baseline=not no_baseline,
        report_dir=report_dir,
        client=dask_address,
    )
    if output_format == "json":
        emit_json(result.as_dict())
    else:
        click.echo(_sweep_table(result, show_all))
        click.echo(result.recommendation())
