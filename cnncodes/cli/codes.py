"""Commands that make and manage codes: extract, and cache ls/info/verify/compact/rm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

import cnncodes

from .options import (
    Command,
    apply_options,
    cache_dir_option,
    code_options,
    declared_option,
    dask_option,
    format_option,
    library_errors,
    report_option,
    run_options,
)
from .render import as_inputs, echo_failures, emit_json, exit_if_failed, is_quiet, table
from .root import cli


@cli.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Codes file (HDF5) to write."
)
@code_options
@run_options
@click.option("--strict", is_flag=True, help="Stop at the first bad image (on_error='raise').")
@dask_option
@declared_option("partition_size")
@report_option
@format_option("table", "json")
@library_errors
def extract(
    data: tuple[Path, ...],
    output: Path | None,
    strict: bool,
    dask_address: str | None,
    partition_size: int | None,
    report_dir: Path | None,
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
        cnncodes extract ../shared/data/hymenoptera/val --report explore/
    """
    as_json = output_format == "json"
    result = cnncodes.extract(
        as_inputs(data),
        **options,
        on_error="raise" if strict else "skip",
        progress=False if as_json or is_quiet() else None,
        output=output,
        client=dask_address,
        partition_size=partition_size,
        report_dir=report_dir,
    )
    echo_failures(result.failures)
    click.echo(result.summary(), err=as_json)
    if as_json:
        emit_json(
            {
                "images": result.n_images,
                "from_cache": result.n_from_cache,
                "failed": result.n_failed,
                "n_features": int(result.codes.shape[1]),
                "output": str(output) if output else None,
                "failures": [list(f) for f in result.failures],
            }
        )
    exit_if_failed(result.failures)


@cli.group()
def cache() -> None:
    """Inspect and manage the code cache (feature sets of HDF5 shards).

    \b
    Example:
        cnncodes cache ls
        cnncodes cache verify
    """


@cache.command("ls")
@cache_dir_option
@format_option("table", "json")
@library_errors
def cache_ls(cache_dir: Path | None, output_format: str) -> None:
    """List feature sets: fingerprint, model, layer, codes, size.

    \b
    Example:
        cnncodes cache ls
    """
    infos = cnncodes.cache_info(cache_dir)
    if output_format == "json":
        keys = ("fingerprint", "path", "n_codes", "n_shards", "n_bytes", "n_features", "spec")
        emit_json([{key: getattr(info, key) for key in keys} for info in infos])
        return
    click.echo(
        table(
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
        options = [click.argument("fingerprint", default=""), cache_dir_option]
        return cache.command(name)(apply_options(library_errors(function), options))

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
    exit_if_failed(damaged)


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
@cache_dir_option
@library_errors
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
