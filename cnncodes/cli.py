"""The command line: each command parses options, calls one library function, renders."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click

import cnncodes
from cnncodes.params import COMBINES, DEVICES, HEAD_NAMES, NORMALIZATIONS, POOLINGS, VIEWS

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

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except cnncodes.CnnCodesError as error:
            raise click.ClickException(str(error)) from error

    return wrapper


def _default(function: Callable[..., Any], parameter: str) -> Any:
    """The library's default of ``parameter``: defaults are defined once, in the library."""
    return inspect.signature(function).parameters[parameter].default


_EXIT_SOME_FAILED = 3  # the run finished, but some inputs have no codes


def backbone_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options that choose the codes: backbone, layers, pooling, views, normalization."""
    decorators = [
        click.option(
            "--model",
            "-m",
            default=_default(cnncodes.extract, "model"),
            show_default=True,
            help="Zoo backbone (cnncodes models) or path of an .onnx file.",
        ),
        click.option(
            "--layer",
            "-l",
            "layers",
            multiple=True,
            help="Tap to use; repeat to concatenate several. [default: penultimate]",
        ),
        click.option(
            "--pooling",
            type=click.Choice(POOLINGS),
            default=_default(cnncodes.extract, "pooling"),
            show_default=True,
        ),
        click.option("--grid", type=click.IntRange(min=1), default=None, help="Pool on a GRID x GRID layout."),
        click.option(
            "--views", type=click.Choice(VIEWS), default=_default(cnncodes.extract, "views"), show_default=True
        ),
        click.option(
            "--combine",
            type=click.Choice(COMBINES),
            default=_default(cnncodes.extract, "combine"),
            show_default=True,
        ),
        click.option(
            "--normalize",
            type=click.Choice(NORMALIZATIONS),
            default=_default(cnncodes.extract, "normalize"),
            show_default=True,
        ),
        click.option(
            "--dtype",
            type=click.Choice(["float32", "float16"]),
            default=_default(cnncodes.extract, "dtype"),
            show_default=True,
            help="Storage precision in the cache.",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def run_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Options that change how extraction runs, not the codes."""
    decorators = [
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=_default(cnncodes.extract, "batch_size"),
            help="Model inputs per inference call. [default: 8 on the CPU, 64 on a GPU]",
        ),
        click.option(
            "--device",
            type=click.Choice(DEVICES),
            default=_default(cnncodes.extract, "device"),
            show_default=True,
        ),
        click.option(
            "--threads",
            "n_threads",
            type=click.IntRange(min=1),
            default=None,
            help="onnxruntime intra-op threads. [default: every core]",
        ),
        click.option(
            "--optimization",
            type=click.Choice(["disable", "basic", "extended", "all"]),
            default=_default(cnncodes.extract, "optimization"),
            show_default=True,
            help="onnxruntime graph optimization level.",
        ),
        click.option(
            "--cache",
            "cache_dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Cache folder. [default: $CNNCODES_CACHE or the user cache folder]",
        ),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the cache."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def dask_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """``--dask``: a scheduler address, or local:N for a local cluster of N worker processes."""
    return click.option(
        "--dask",
        "dask_address",
        default=None,
        metavar="ADDRESS|local:N",
        help="Run on a dask cluster (needs cnncodes[dask]).",
    )(function)


def _is_quiet() -> bool:
    """Whether ``cnncodes --quiet`` was given (no progress line either)."""
    return bool(click.get_current_context().find_root().params.get("quiet"))


def _cache_argument(cache_dir: Path | None, no_cache: bool) -> Any:
    return False if no_cache else (cache_dir if cache_dir is not None else True)


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
    click.echo(
        _table(
            ["name", "input", "default", "taps", "present", "license"],
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
        click.echo(
            _table(
                ["tensor", "shape", "channels"],
                [[r.tensor, "x".join(map(str, r.shape or ())), r.channels] for r in rows],
            )
        )
        return
    click.echo(
        _table(
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
    )


@cli.command()
@click.argument("name", type=click.Choice(sorted(__import__('cnncodes.export').export.EXPORTABLE)))
@click.option(
    "--weights",
    default="imagenet",
    show_default=True,
    help="'imagenet' (torchvision's weights, downloaded), 'random', or a .pth path or URL.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="ONNX file to write (default: the model directory).",
)
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


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Codes file (HDF5) to write."
)
@backbone_options
@run_options
@click.option("--strict", is_flag=True, help="Stop at the first bad image.")
@dask_option
@json_option
@click.pass_context
@_library_errors
def extract(
    context: click.Context,
    data: tuple[Path, ...],
    output: Path | None,
    model: str,
    layers: tuple[str, ...],
    pooling: str,
    grid: int | None,
    views: str,
    combine: str,
    normalize: str,
    dtype: str,
    batch_size: int,
    device: str,
    n_threads: int | None,
    optimization: str,
    cache_dir: Path | None,
    no_cache: bool,
    strict: bool,
    dask_address: str | None,
    as_json: bool,
) -> None:
    """Turn images into CNN codes (cached), optionally writing a codes file.

    DATA is a folder (one subfolder per class gives labels), a CSV of path[,label]
    rows, or image files and folders. Exit code 3 means some images failed.

    \b
    Example:
        cnncodes extract photos/ -o codes.h5
        cnncodes extract photos/ -o codes.h5 --layer stage4 --layer penultimate --views flip
        cnncodes extract photos/ -o codes.h5 --dask local:2
    """
    result = cnncodes.extract(
        data[0] if len(data) == 1 else list(data),
        model=model,
        layer=list(layers) or _default(cnncodes.extract, "layer"),
        pooling=pooling,
        grid=grid,
        views=views,
        combine=combine,
        normalize=normalize,
        dtype=dtype,
        cache=_cache_argument(cache_dir, no_cache),
        batch_size=batch_size,
        device=device,
        n_threads=n_threads,
        optimization=optimization,
        on_error="raise" if strict else "skip",
        progress=False if as_json or _is_quiet() else None,
        output=output,
        client=dask_address,
    )
    for path, reason in result.failures:
        click.echo(f"failed: {path}: {reason}", err=True)
    click.echo(result.summary(), err=as_json)
    if as_json:
        _emit_json(
            {
                "images": result.n_images,
                "from_cache": result.n_from_cache,
                "failed": result.n_failed,
                "n_features": int(result.codes.shape[1]),
                "output": str(output) if output else None,
                "failures": [list(f) for f in result.failures],
            }
        )
    if result.failures:
        context.exit(_EXIT_SOME_FAILED)


def _cache_root_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--cache",
        "cache_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Cache folder. [default: $CNNCODES_CACHE or the user cache folder]",
    )(function)


@cli.group()
def cache() -> None:
    """Inspect and manage the code cache (feature sets of HDF5 shards)."""


@cache.command("ls")
@_cache_root_option
@json_option
@_library_errors
def cache_ls(cache_dir: Path | None, as_json: bool) -> None:
    """List feature sets: fingerprint, model, layer, codes, size.

    \b
    Example:
        cnncodes cache ls
    """
    infos = cnncodes.cache_info(cache_dir)
    if as_json:
        _emit_json(
            [
                {
                    "fingerprint": i.fingerprint,
                    "path": str(i.path),
                    "n_codes": i.n_codes,
                    "n_shards": i.n_shards,
                    "n_bytes": i.n_bytes,
                    "n_features": i.n_features,
                    "spec": i.spec,
                }
                for i in infos
            ]
        )
        return
    click.echo(
        _table(
            ["fingerprint", "model", "layer", "features", "codes", "shards", "MB"],
            [
                [
                    i.fingerprint[:12],
                    i.spec.get("model"),
                    i.spec.get("tap"),
                    i.n_features,
                    i.n_codes,
                    i.n_shards,
                    f"{i.n_bytes / 1e6:.1f}",
                ]
                for i in infos
            ],
        )
    )


@cache.command("info")
@click.argument("fingerprint", default="")
@_cache_root_option
@_library_errors
def cache_info(fingerprint: str, cache_dir: Path | None) -> None:
    """Show the full spec, counts and size of feature sets (all, or FINGERPRINT prefix).

    \b
    Example:
        cnncodes cache info 3fa2
    """
    for info in cnncodes.cache_info(cache_dir, fingerprint):
        click.echo(
            f"{info.fingerprint}\n  path: {info.path}\n  codes: {info.n_codes} x {info.n_features}"
            f"  shards: {info.n_shards}  bytes: {info.n_bytes}\n  spec: {json.dumps(info.spec, sort_keys=True)}"
        )


@cache.command("verify")
@click.argument("fingerprint", default="")
@_cache_root_option
@click.pass_context
@_library_errors
def cache_verify(context: click.Context, fingerprint: str, cache_dir: Path | None) -> None:
    """Read every shard and report damage (exit code 3 if any).

    \b
    Example:
        cnncodes cache verify
    """
    report = cnncodes.verify_cache(cache_dir, fingerprint)
    damaged = [d for damages in report.values() for d in damages]
    for damage in damaged:
        click.echo(f"damaged: {damage.path}: {damage.reason}")
    click.echo(f"{len(report)} feature sets verified, {len(damaged)} damaged shards")
    if damaged:
        context.exit(_EXIT_SOME_FAILED)


@cache.command("compact")
@click.argument("fingerprint", default="")
@_cache_root_option
@_library_errors
def cache_compact(fingerprint: str, cache_dir: Path | None) -> None:
    """Merge the shards of each feature set into one, atomically.

    \b
    Example:
        cnncodes cache compact
    """
    for name, (before, n_codes) in cnncodes.compact_cache(cache_dir, fingerprint).items():
        click.echo(f"{name[:12]}: {before} shards -> 1 ({n_codes} codes)")


@cache.command("rm")
@click.argument("fingerprint", required=False)
@click.option("--all", "remove_all", is_flag=True, help="Remove every feature set.")
@_cache_root_option
@_library_errors
def cache_rm(fingerprint: str | None, remove_all: bool, cache_dir: Path | None) -> None:
    """Delete feature sets by FINGERPRINT prefix (or --all).

    \b
    Example:
        cnncodes cache rm 3fa2
    """
    if not fingerprint and not remove_all:
        raise click.UsageError("give a FINGERPRINT prefix or --all")
    removed = cnncodes.remove_cache(cache_dir, "" if remove_all else fingerprint or "")
    click.echo(f"removed {len(removed)} feature sets ({sum(i.n_bytes for i in removed) / 1e6:.1f} MB)")


def _codes_from_options(
    model: str,
    layers: tuple[str, ...],
    pooling: str,
    grid: int | None,
    views: str,
    combine: str,
    normalize: str,
    dtype: str,
    batch_size: int | None,
    device: str,
    n_threads: int | None,
    optimization: str,
    cache_dir: Path | None,
    no_cache: bool,
) -> cnncodes.CNNCodes:
    layer: Any = (
        _default(cnncodes.extract, "layer") if not layers else (layers[0] if len(layers) == 1 else tuple(layers))
    )
    return cnncodes.CNNCodes(
        model=model,
        layer=layer,
        pooling=pooling,
        grid=grid,
        views=views,
        combine=combine,
        normalize=normalize,
        dtype=dtype,
        batch_size=batch_size,
        device=device,
        n_threads=n_threads,
        optimization=optimization,
        cache=_cache_argument(cache_dir, no_cache),
    )


def _parse_param(text: str) -> tuple[str, Any]:
    """``C=0.001`` -> ("C", 0.001); values are read as JSON when they can be (numbers, null), else kept as text."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise click.BadParameter(f"expected NAME=VALUE, got {text!r}", param_hint="--param")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _echo_failures(failures: list[tuple[str, str]]) -> None:
    for path, reason in failures:
        click.echo(f"failed: {path}: {reason}", err=True)


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--head", type=click.Choice(sorted(HEAD_NAMES)), default=_default(cnncodes.train, "head"), show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Model file (joblib)."
)
@backbone_options
@run_options
@click.option(
    "--cv",
    type=click.IntRange(min=2),
    default=_default(cnncodes.train, "cv"),
    show_default=True,
    help="Folds that choose the head's hyperparameter.",
)
@click.option(
    "--class-weight", type=click.Choice(["balanced"]), default=None, help="Weigh classes for imbalanced data."
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="Fix a head hyperparameter (as sweep reports it) instead of searching; repeat.",
)
@dask_option
@json_option
@_library_errors
def train(
    data: tuple[Path, ...],
    head: str,
    output: Path,
    cv: int,
    class_weight: str | None,
    params: tuple[str, ...],
    dask_address: str | None,
    as_json: bool,
    **code_options: Any,
) -> None:
    """Train a head on the codes of labelled images (or a codes file) and save the model.

    \b
    Example:
        cnncodes train ../shared/data/hymenoptera/train --head linear-svm -o model.joblib
    """
    codes = _codes_from_options(**code_options)
    result = cnncodes.train(
        data[0] if len(data) == 1 else list(data),
        head=head,
        codes=codes,
        cv=cv,
        class_weight=class_weight,
        output=output,
        client=dask_address,
        params=dict(_parse_param(text) for text in params) or None,
    )
    _echo_failures(result.failures)
    click.echo(result.summary(), err=as_json)
    if as_json:
        _emit_json(
            {
                "output": str(result.path),
                "n_samples": result.n_samples,
                "cv_accuracy": result.cv_accuracy,
                "best_params": result.best_params,
                "failed": len(result.failures),
            }
        )


def _report_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--report",
        "report_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Also write JSON and PNG plots into this folder.",
    )(function)


@cli.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_report_option
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option(
    "--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Cache folder."
)
@json_option
@click.pass_context
@_library_errors
def evaluate(
    context: click.Context,
    model_file: Path,
    data: tuple[Path, ...],
    report_dir: Path | None,
    device: str,
    cache_dir: Path | None,
    as_json: bool,
) -> None:
    """Score a model on labelled images (or a codes file): accuracy, balanced accuracy, F1, confusion matrix.

    Images that cannot be decoded are listed, left out of the scores, and make the exit code 3.

    \b
    Example:
        cnncodes evaluate model.joblib ../shared/data/hymenoptera/val --report report/
    """
    result = cnncodes.evaluate(
        model_file,
        data[0] if len(data) == 1 else list(data),
        report_dir=report_dir,
        cache=cache_dir if cache_dir else True,
        device=device,
    )
    _echo_failures(result.failures)
    if as_json:
        _emit_json({**result.report.as_dict(), "failed": len(result.failures)})
    else:
        click.echo(result.report.table())
    if result.failures:
        context.exit(_EXIT_SOME_FAILED)


@cli.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--top-k", type=click.IntRange(min=1), default=_default(cnncodes.predict, "top_k"), show_default=True)
@click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option(
    "--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Cache folder."
)
@click.pass_context
@_library_errors
def predict(
    context: click.Context,
    model_file: Path,
    images: tuple[Path, ...],
    top_k: int,
    output_format: str,
    device: str,
    cache_dir: Path | None,
) -> None:
    """Predict the top classes of images (files or folders) with a model.

    \b
    Example:
        cnncodes predict model.joblib photo.jpg more_photos/ --top-k 2 --format json
    """
    result = cnncodes.predict(
        model_file, list(images), top_k=top_k, cache=cache_dir if cache_dir else True, device=device
    )
    _echo_failures(result.failures)
    if output_format == "json":
        _emit_json(
            {
                "score": result.score_kind,
                "predictions": [
                    {"path": p.path, "top": [{"class": name, "score": score} for name, score in p.top]}
                    for p in result.predictions
                ],
            }
        )
    elif output_format == "csv":
        click.echo("path,rank,class,score")
        for p in result.predictions:
            for rank, (name, score) in enumerate(p.top, 1):
                click.echo(f"{json.dumps(p.path)},{rank},{json.dumps(name)},{score:.6f}")
    else:
        rows = [[p.path, *(f"{name} {score:.3f}" for name, score in p.top)] for p in result.predictions]
        click.echo(
            _table(["path", *(f"top {i} ({result.score_kind})" for i in range(1, len(rows[0]) if rows else 2))], rows)
        )
    if result.failures:
        context.exit(_EXIT_SOME_FAILED)


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--models", "models_", multiple=True, help="Backbone to try; repeat. [default: efficientnet_lite0]")
@click.option(
    "--layers",
    "layer_sets",
    multiple=True,
    help="Layer set to try; repeat; 'stage4+penultimate' concatenates. [default: every stage and the default tap]",
)
@click.option(
    "--heads", multiple=True, type=click.Choice(sorted(HEAD_NAMES)), help="Head to try; repeat. [default: logistic]"
)
@click.option(
    "--val",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Score on this labelled split instead of CV.",
)
@click.option("--cv", type=click.IntRange(min=2), default=_default(cnncodes.sweep, "cv"), show_default=True)
@click.option("--groups", default=None, help="Regex on file names naming groups (e.g. patients) kept within one fold.")
@click.option("--class-weight", type=click.Choice(["balanced"]), default=None)
@click.option("--no-baseline", is_flag=True, help="Skip the raw-pixel (no transfer) baseline.")
@click.option(
    "--pooling",
    "poolings",
    multiple=True,
    type=click.Choice(POOLINGS),
    help="Pooling to try; repeat. [default: avg]",
)
@click.option(
    "--views", type=click.Choice(VIEWS), default=_default(cnncodes.extract, "views"), show_default=True
)
@run_options
@_report_option
@click.option(
    "--all", "show_all", is_flag=True, help="Show every hyperparameter value, not only the best per combination."
)
@dask_option
@json_option
@_library_errors
def sweep(
    data: tuple[Path, ...],
    models_: tuple[str, ...],
    layer_sets: tuple[str, ...],
    heads: tuple[str, ...],
    val: Path | None,
    cv: int,
    groups: str | None,
    class_weight: str | None,
    no_baseline: bool,
    poolings: tuple[str, ...],
    views: str,
    batch_size: int | None,
    device: str,
    n_threads: int | None,
    optimization: str,
    cache_dir: Path | None,
    no_cache: bool,
    report_dir: Path | None,
    show_all: bool,
    dask_address: str | None,
    as_json: bool,
) -> None:
    """Rank every backbone x layer x head on cached codes, beside a raw-pixel baseline.

    \b
    Example:
        cnncodes sweep ../shared/data/chest_xray/train --heads logistic --heads linear-svm --class-weight balanced
    """
    codes = cnncodes.CNNCodes(
        views=views,
        batch_size=batch_size,
        device=device,
        n_threads=n_threads,
        optimization=optimization,
        cache=_cache_argument(cache_dir, no_cache),
    )
    result = cnncodes.sweep(
        data[0] if len(data) == 1 else list(data),
        models=models_ or _default(cnncodes.sweep, "models"),
        layers=layer_sets or None,
        heads=heads or _default(cnncodes.sweep, "heads"),
        poolings=poolings or None,
        codes=codes,
        val=val,
        cv=cv,
        groups=groups,
        class_weight=class_weight,
        baseline=not no_baseline,
        report_dir=report_dir,
        client=dask_address,
    )
    if as_json:
        _emit_json(result.as_dict())
        return
    rows = result.rows if show_all else result.best_per_combination()
    click.echo(
        _table(
            ["rank", "model", "features", "pooling", "head", "params", "dims", "accuracy", "balanced"],
            [
                [
                    rank,
                    r.model,
                    r.features,
                    r.pooling if r.model != "-" else "-",
                    r.head,
                    ", ".join(f"{k}={v}" for k, v in r.params.items()),
                    r.n_features,
                    f"{r.accuracy:.4f}" + (f" ±{r.accuracy_std:.3f}" if r.accuracy_std else ""),
                    f"{r.balanced_accuracy:.4f}"
                    + (f" ±{r.balanced_accuracy_std:.3f}" if r.balanced_accuracy_std else ""),
                ]
                for rank, r in enumerate(rows, 1)
            ],
        )
    )
    click.echo(result.recommendation())
