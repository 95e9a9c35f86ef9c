"""The command line: each command converts its options, calls one library function, renders the result.

Options that change the codes or the run are built from the declarations in :mod:`cnncodes.params`;
other defaults are read from the library function's signature when a command runs or shows its help.
Only ``click``, the lazy ``cnncodes`` facade, ``cnncodes.params`` and the exporter's model list are
imported here, so ``cnncodes --help`` loads no numpy, onnxruntime, h5py or scikit-learn.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import click

import cnncodes
from cnncodes import params
from cnncodes.export import EXPORTABLE  # names only: the exporter imports torch when it runs

__all__ = ["cli"]

Command = Callable[..., Any]
_EXIT_SOME_FAILED = 3  # the run finished, but some inputs have no codes
_FLAGS = {
    "model": ("--model", "-m"),
    "layer": ("--layer", "-l"),
    "n_threads": ("--threads",),
    "n_workers": ("--workers",),
}
_RUN_OPTIONS = tuple(name for name in params.RUN_PARAMETERS if name != "on_error")  # on_error is --strict
_CLASS_WEIGHTS = ("balanced",)  # scikit-learn's only named class weighting


def _help(parameter: params.Parameter, note: str = "") -> str:
    """The declared help, its ``None: X`` (the library's unset value) shown as the CLI's ``[default: X]``."""
    text, _, unset = parameter.help.partition("; None: ")
    text = text.rstrip(".") + "." + note
    return f"{text} [default: {unset.rstrip('.')}]" if unset else text


def _empty_as_none(context: click.Context, option: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...] | None:
    return value or None


def _declared_option(name: str) -> Callable[[Command], Command]:
    """The click option of one declared parameter: flags, type, default and help all from the declaration."""
    parameter = params.PARAMETERS[name] if name in params.PARAMETERS else params.CLUSTER_PARAMETERS[name]
    flags = _FLAGS.get(name, (parameter.option,))
    settings: dict[str, Any] = {"default": parameter.default, "show_default": parameter.default is not None}
    settings["help"] = _help(parameter)
    if parameter.kind == "choice":
        settings["type"] = click.Choice(parameter.choices or ())
    elif parameter.kind == "positive_int":
        settings["type"] = click.IntRange(min=1)
    elif parameter.kind == "positive_float":
        settings["type"] = click.FloatRange(min=0, min_open=True)
    elif parameter.kind == "optional_bool":  # tri-state: --relu, --no-relu, or neither (None)
        flags = (f"{parameter.option}/--no-{parameter.option[2:]}",)
    elif parameter.kind == "layer":
        settings.update(multiple=True, callback=_empty_as_none, help=_help(parameter, " Repeat for several."))
    return click.option(*flags, name, **settings)


def _apply(function: Command, decorators: Sequence[Callable[[Command], Command]]) -> Command:
    """Apply option decorators so that help lists them in the given order."""
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def code_options(function: Command) -> Command:
    """Options that change the codes: one per parameter of ``params.CODE_PARAMETERS``."""
    return _apply(function, [_declared_option(name) for name in params.CODE_PARAMETERS])


def _cache_help() -> tuple[str, str]:
    """Help of ``--cache DIR`` and ``--no-cache``, from the one ``cache`` declaration."""
    declared = params.PARAMETERS["cache"].help
    match = re.fullmatch(r"(.*); True: (.*); False: (.*)\.", declared)
    if match is None:
        return declared, declared
    return f"{match[1]}. [default: {match[2]}]", f"{match[3][:1].upper()}{match[3][1:]}."


def _cache_dir_option(function: Command) -> Command:
    """``--cache DIR``: the cache folder (the management commands take only this half of ``cache``)."""
    folder = click.Path(file_okay=False, path_type=Path)
    return click.option("--cache", "cache_dir", type=folder, default=None, help=_cache_help()[0])(function)


def run_options(function: Command) -> Command:
    """Options that change how a run goes, not the codes: ``params.RUN_PARAMETERS`` but ``on_error``.

    ``--cache DIR`` and ``--no-cache`` reach the command as the library's one ``cache`` argument.
    """

    @functools.wraps(function)
    def with_cache(*args: Any, cache_dir: Path | None, no_cache: bool, **kwargs: Any) -> Any:
        if no_cache and cache_dir is not None:
            raise click.BadOptionUsage("no_cache", "--cache and --no-cache exclude each other")
        cache = False if no_cache else params.default("cache") if cache_dir is None else cache_dir
        return function(*args, cache=cache, **kwargs)

    no_cache = click.option("--no-cache", "no_cache", is_flag=True, help=_cache_help()[1])
    others = [_declared_option(name) for name in _RUN_OPTIONS if name != "cache"]
    return _apply(with_cache, [_cache_dir_option, no_cache, *others])


class _LibraryDefault(click.Option):
    """An option whose default is the library function's own, read only when a command runs or shows help.

    Reading it then keeps ``cnncodes --help`` from importing the library (and scikit-learn).
    """

    def __init__(self, *args: Any, library: tuple[str, str], **kwargs: Any) -> None:
        super().__init__(*args, show_default=True, **kwargs)
        self.library = library  # (public function, parameter)

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        function, parameter = self.library
        return inspect.signature(getattr(cnncodes, function)).parameters[parameter].default


def _library_option(*flags: str, library: tuple[str, str], **settings: Any) -> Callable[[Command], Command]:
    return click.option(*flags, cls=_LibraryDefault, library=library, **settings)


def _format_option(*formats: str) -> Callable[[Command], Command]:
    """``--format``: the first of ``formats`` (a table) is for people, json (and csv) for programs."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(formats),
        default=formats[0],
        show_default=True,
        help="How to print the result: a table for people, " + " or ".join(formats[1:]) + " for programs.",
    )


def _dask_option(function: Command) -> Command:
    return click.option(
        "--dask",
        "dask_address",
        default=None,
        metavar="ADDRESS|local:N",
        help="Run on a dask cluster: a scheduler address or local:N worker processes (needs cnncodes[dask]).",
    )(function)


def _trust_option(function: Command) -> Command:
    return click.option(
        "--trust",
        "trusted",
        is_flag=True,
        help="Also read a joblib model file (the first model format). "
        "WARNING: joblib (pickle) files run code when loaded; use only for files you made.",
    )(function)


def _report_option(function: Command) -> Command:
    folder = click.Path(file_okay=False, path_type=Path)
    return click.option(
        "--report", "report_dir", type=folder, default=None, help="Also write JSON and PNG plots into this folder."
    )(function)


def _library_errors(function: Command) -> Command:
    """Turn a CnnCodesError into click's one-line 'Error: ...' and exit code 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except cnncodes.CnnCodesError as error:
            raise click.ClickException(str(error)) from error

    return wrapper


def _parse_params(context: click.Context, option: click.Parameter, texts: tuple[str, ...]) -> dict[str, Any] | None:
    """``C=0.001`` -> {"C": 0.001}; values are read as JSON when they can be (numbers, null), else kept as text."""
    fixed = {}
    for text in texts:
        name, separator, value = text.partition("=")
        if not separator or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {text!r}", context, option)
        try:
            fixed[name] = json.loads(value)
        except ValueError:
            fixed[name] = value
    return fixed or None


def _inputs(data: tuple[Path, ...]) -> Path | list[Path]:
    """One argument as itself (a folder keeps its class labels), several as a list."""
    return data[0] if len(data) == 1 else list(data)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, default=str))


def _echo_failures(failures: Sequence[tuple[str, str]]) -> None:
    for path, reason in failures:
        click.echo(f"failed: {path}: {reason}", err=True)


def _exit_if_failed(failures: Sequence[Any]) -> None:
    if failures:
        click.get_current_context().exit(_EXIT_SOME_FAILED)


def _is_quiet() -> bool:
    """Whether ``cnncodes --quiet`` was given (no progress line either)."""
    return bool(click.get_current_context().find_root().params.get("quiet"))


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
@_format_option("table", "json")
@click.pass_context
@_library_errors
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
        _emit_json([row.as_dict() for row in rows])
        return
    headers = ["name", "input", "default", "taps", "present", "license"]
    click.echo(
        _table(
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
@_library_errors
def models_fetch(name: str) -> None:
    """Download a zoo model whose card gives a URL, checking its sha256.

    \b
    Example:
        cnncodes models fetch some_model
    """
    click.echo(f"{name}: {cnncodes.fetch_model(name)}")


def _layer_table(rows: Sequence[Any]) -> str:
    if rows and rows[0].shape is not None:  # any ONNX file: its tensors with inferred shapes
        return _table(
            ["tensor", "shape", "channels"], [[r.tensor, "x".join(map(str, r.shape or ())), r.channels] for r in rows]
        )
    return _table(
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
@_format_option("table", "json")
@_library_errors
def layers(model: str, output_format: str) -> None:
    """List the taps of a zoo MODEL, or the tensors of any .onnx file.

    \b
    Example:
        cnncodes layers efficientnet_lite0
        cnncodes layers path/to/model.onnx
    """
    rows = cnncodes.list_layers(model)
    if output_format == "json":
        _emit_json([row.as_dict() for row in rows])
    else:
        click.echo(_layer_table(rows))


@cli.command()
@click.argument("name", type=click.Choice(sorted(EXPORTABLE)), metavar="NAME")
@_library_option(
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
@_library_errors
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


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Codes file (HDF5) to write."
)
@code_options
@run_options
@click.option("--strict", is_flag=True, help="Stop at the first bad image (on_error='raise').")
@_dask_option
@_declared_option("partition_size")
@_format_option("table", "json")
@_library_errors
def extract(
    data: tuple[Path, ...],
    output: Path | None,
    strict: bool,
    dask_address: str | None,
    partition_size: int | None,
    output_format: str,
    **options: Any,
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
    as_json = output_format == "json"
    result = cnncodes.extract(
        _inputs(data),
        **options,
        on_error="raise" if strict else "skip",
        progress=False if as_json or _is_quiet() else None,
        output=output,
        client=dask_address,
        partition_size=partition_size,
    )
    _echo_failures(result.failures)
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
    _exit_if_failed(result.failures)


@cli.group()
def cache() -> None:
    """Inspect and manage the code cache (feature sets of HDF5 shards).

    \b
    Example:
        cnncodes cache ls
        cnncodes cache verify
    """


@cache.command("ls")
@_cache_dir_option
@_format_option("table", "json")
@_library_errors
def cache_ls(cache_dir: Path | None, output_format: str) -> None:
    """List feature sets: fingerprint, model, layer, codes, size.

    \b
    Example:
        cnncodes cache ls
    """
    infos = cnncodes.cache_info(cache_dir)
    if output_format == "json":
        keys = ("fingerprint", "path", "n_codes", "n_shards", "n_bytes", "n_features", "spec")
        _emit_json([{key: getattr(info, key) for key in keys} for info in infos])
        return
    click.echo(
        _table(
            ["fingerprint", "model", "layer", "features", "codes", "shards", "MB"],
            [
                [i.fingerprint[:12], i.spec.get("model"), i.spec.get("tap"), i.n_features, i.n_codes, i.n_shards]
                + [f"{i.n_bytes / 1e6:.1f}"]
                for i in infos
            ],
        )
    )


def _feature_sets_command(name: str) -> Callable[[Command], Command]:
    """A cache subcommand on the feature sets whose fingerprint starts with FINGERPRINT (all when it is left out)."""

    def decorate(function: Command) -> Command:
        options = [click.argument("fingerprint", default=""), _cache_dir_option]
        return cache.command(name)(_apply(_library_errors(function), options))

    return decorate


@_feature_sets_command("info")
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


@_feature_sets_command("verify")
def cache_verify(fingerprint: str, cache_dir: Path | None) -> None:
    """Read every shard and report damage (exit code 3 if any).

    \b
    Example:
        cnncodes cache verify
    """
    report = cnncodes.verify_cache(cache_dir, fingerprint)
    damaged = [damage for damages in report.values() for damage in damages]
    for damage in damaged:
        click.echo(f"damaged: {damage.path}: {damage.reason}")
    click.echo(f"{len(report)} feature sets verified, {len(damaged)} damaged shards")
    _exit_if_failed(damaged)


@_feature_sets_command("compact")
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
@_cache_dir_option
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


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_library_option("--head", library=("train", "head"), type=click.Choice(sorted(params.HEAD_NAMES)))
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Model file (.skops)."
)
@code_options
@run_options
@_library_option(
    "--cv", library=("train", "cv"), type=click.IntRange(min=2), help="Folds that choose the head's hyperparameter."
)
@click.option("--class-weight", type=click.Choice(_CLASS_WEIGHTS), default=None, help="Weigh classes by frequency.")
@click.option(
    "--param",
    "fixed_params",
    multiple=True,
    callback=_parse_params,
    metavar="NAME=VALUE",
    help="Fix a head hyperparameter (as sweep reports it) instead of searching; repeat.",
)
@_dask_option
@_format_option("table", "json")
@_library_errors
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
        _inputs(data),
        head=head,
        codes=cnncodes.CNNCodes(**options),
        cv=cv,
        class_weight=class_weight,
        output=output,
        client=dask_address,
        params=fixed_params,
    )
    _echo_failures(result.failures)
    click.echo(result.summary(), err=output_format == "json")
    if output_format == "json":
        _emit_json(
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
@_report_option
@run_options
@_trust_option
@_format_option("table", "json")
@_library_errors
def evaluate(
    model_file: Path, data: tuple[Path, ...], report_dir: Path | None, output_format: str, **options: Any
) -> None:
    """Score a model on labelled images (or a codes file): accuracy, balanced accuracy, F1, confusion matrix.

    Images that cannot be decoded are listed, left out of the scores, and make the exit code 3.

    \b
    Example:
        cnncodes evaluate model.skops ../shared/data/hymenoptera/val --report report/
    """
    result = cnncodes.evaluate(model_file, _inputs(data), report_dir=report_dir, **options)
    _echo_failures(result.failures)
    if output_format == "json":
        _emit_json({**result.report.as_dict(), "failed": len(result.failures)})
    else:
        click.echo(result.report.table())
    _exit_if_failed(result.failures)


def _render_predictions(result: Any, output_format: str) -> str:
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
    return _table(["path", *(f"top {i} ({result.score_kind})" for i in range(1, n_top + 1))], rows)


@cli.command()
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_library_option("--top-k", library=("predict", "top_k"), type=click.IntRange(min=1), help="Classes per image.")
@run_options
@_trust_option
@_format_option("table", "csv", "json")
@_library_errors
def predict(model_file: Path, images: tuple[Path, ...], top_k: int, output_format: str, **options: Any) -> None:
    """Predict the top classes of images (files or folders) with a model.

    \b
    Example:
        cnncodes predict model.skops photo.jpg more_photos/ --top-k 2 --format json
    """
    result = cnncodes.predict(model_file, list(images), top_k=top_k, **options)
    _echo_failures(result.failures)
    click.echo(_render_predictions(result, output_format))
    _exit_if_failed(result.failures)


def _sweep_table(result: Any, show_all: bool) -> str:
    def spread(value: float, std: float) -> str:
        return f"{value:.4f}" + (f" ±{std:.3f}" if std else "")

    rows = result.rows if show_all else result.best_per_combination()
    return _table(
        ["rank", "model", "features", "pooling", "head", "params", "dims", "accuracy", "balanced"],
        [
            [rank, r.model, r.features, r.pooling if r.model != "-" else "-", r.head]
            + [", ".join(f"{k}={v}" for k, v in r.params.items()), r.n_features]
            + [spread(r.accuracy, r.accuracy_std), spread(r.balanced_accuracy, r.balanced_accuracy_std)]
            for rank, r in enumerate(rows, 1)
        ],
    )


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_library_option("--models", "models_", library=("sweep", "models"), multiple=True, help="Backbone to try; repeat.")
@click.option(
    "--layers",
    "layer_sets",
    multiple=True,
    callback=_empty_as_none,
    help="Layer set to try; repeat; 'stage4+penultimate' concatenates. [default: every stage and the default tap]",
)
@_library_option(
    "--heads",
    library=("sweep", "heads"),
    multiple=True,
    type=click.Choice(sorted(params.HEAD_NAMES)),
    help="Head to try; repeat.",
)
@click.option(
    "--pooling",
    "poolings",
    multiple=True,
    callback=_empty_as_none,
    type=click.Choice(params.POOLINGS),
    help=f"Pooling to try; repeat. [default: {params.default('pooling')}]",
)
@_declared_option("views")
@click.option(
    "--val", type=click.Path(exists=True, path_type=Path), default=None, help="Score on this labelled split, not CV."
)
@_library_option("--cv", library=("sweep", "cv"), type=click.IntRange(min=2), help="Cross-validation folds.")
@click.option("--groups", default=None, help="Regex on file names naming groups (e.g. patients) kept within one fold.")
@click.option("--class-weight", type=click.Choice(_CLASS_WEIGHTS), default=None, help="Weigh classes by frequency.")
@click.option("--no-baseline", is_flag=True, help="Skip the raw-pixel (no transfer) baseline.")
@run_options
@_report_option
@click.option("--all", "show_all", is_flag=True, help="Show every hyperparameter value, not only the best of each.")
@_dask_option
@_format_option("table", "json")
@_library_errors
def sweep(
    data: tuple[Path, ...],
    models_: tuple[str, ...],
    layer_sets: tuple[str, ...] | None,
    heads: tuple[str, ...],
    poolings: tuple[str, ...] | None,
    views: str,
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
    """
    result = cnncodes.sweep(
        _inputs(data),
        models=models_,
        layers=layer_sets,
        heads=heads,
        poolings=poolings,
        codes=cnncodes.CNNCodes(views=views, **options),
        val=val,
        cv=cv,
        groups=groups,
        class_weight=class_weight,
        baseline=not no_baseline,
        report_dir=report_dir,
        client=dask_address,
    )
    if output_format == "json":
        _emit_json(result.as_dict())
    else:
        click.echo(_sweep_table(result, show_all))
        click.echo(result.recommendation())
