"""Click options built from the declarations in :mod:`cnncodes.params`, and the one error wrapper.

Other defaults are read from the library function's signature when a command runs or shows its
help, so building these options imports no library code beyond the lazy facade.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import click

import cnncodes
from cnncodes import params

Command = Callable[..., Any]
FLAGS = {
    "model": ("--model", "-m"),
    "layer": ("--layer", "-l"),
    "n_threads": ("--threads",),
    "n_workers": ("--workers",),
}
RUN_OPTIONS = tuple(name for name in params.RUN_PARAMETERS if name != "on_error")  # on_error is --strict
CLASS_WEIGHTS = ("balanced",)  # scikit-learn's only named class weighting


def declared_help(parameter: params.Parameter, note: str = "") -> str:
    """The declared help, its ``None: X`` (the library's unset value) shown as the CLI's ``[default: X]``."""
    text, _, unset = parameter.help.partition("; None: ")
    text = text.rstrip(".") + "." + note
    return f"{text} [default: {unset.rstrip('.')}]" if unset else text


def empty_as_none(context: click.Context, option: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...] | None:
    return value or None


def declared_option(name: str) -> Callable[[Command], Command]:
    """The click option of one declared parameter: flags, type, default and help all from the declaration."""
    parameter = params.PARAMETERS[name] if name in params.PARAMETERS else params.CLUSTER_PARAMETERS[name]
    flags = FLAGS.get(name, (parameter.option,))
    settings: dict[str, Any] = {"default": parameter.default, "show_default": parameter.default is not None}
    settings["help"] = declared_help(parameter)
    if parameter.kind == "choice":
        settings["type"] = click.Choice(parameter.choices or ())
    elif parameter.kind == "positive_int":
        settings["type"] = click.IntRange(min=1)
    elif parameter.kind == "positive_float":
        settings["type"] = click.FloatRange(min=0, min_open=True)
    elif parameter.kind == "optional_bool":  # tri-state: --relu, --no-relu, or neither (None)
        flags = (f"{parameter.option}/--no-{parameter.option[2:]}",)
    elif parameter.kind == "layer":
        settings.update(multiple=True, callback=empty_as_none, help=declared_help(parameter, " Repeat for several."))
    return click.option(*flags, name, **settings)


def values_to_try(name: str, what: str) -> Callable[[Command], Command]:
    """A repeatable sweep option over the declared choices of parameter ``name`` (``--pooling`` -> ``poolings``)."""
    parameter = params.PARAMETERS[name]
    return click.option(
        parameter.option,
        f"{name}s",
        multiple=True,
        callback=empty_as_none,
        type=click.Choice(parameter.choices or ()),
        help=f"{what} to try; repeat. [default: {parameter.default}]",
    )


def apply_options(function: Command, decorators: Sequence[Callable[[Command], Command]]) -> Command:
    """Apply option decorators so that help lists them in the given order."""
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def code_options(function: Command) -> Command:
    """Options that change the codes: one per parameter of ``params.CODE_PARAMETERS``."""
    return apply_options(function, [declared_option(name) for name in params.CODE_PARAMETERS])


def cache_help() -> tuple[str, str]:
    """Help of ``--cache DIR`` and ``--no-cache``, from the one ``cache`` declaration."""
    declared = params.PARAMETERS["cache"].help
    match = re.fullmatch(r"(.*); True: (.*); False: (.*)\.", declared)
    if match is None:
        return declared, declared
    return f"{match[1]}. [default: {match[2]}]", f"{match[3][:1].upper()}{match[3][1:]}."


def cache_dir_option(function: Command) -> Command:
    """``--cache DIR``: the cache folder (the management commands take only this half of ``cache``)."""
    folder = click.Path(file_okay=False, path_type=Path)
    return click.option("--cache", "cache_dir", type=folder, default=None, help=cache_help()[0])(function)


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

    no_cache = click.option("--no-cache", "no_cache", is_flag=True, help=cache_help()[1])
    others = [declared_option(name) for name in RUN_OPTIONS if name != "cache"]
    return apply_options(with_cache, [cache_dir_option, no_cache, *others])


class LibraryDefault(click.Option):
    """An option whose default is the library function's own, read only when a command runs or shows help.

    Reading it then keeps ``cnncodes --help`` from importing the library (and scikit-learn).
    """

    def __init__(self, *args: Any, library: tuple[str, str], **kwargs: Any) -> None:
        super().__init__(*args, show_default=True, **kwargs)
        self.library = library  # (public function, parameter)

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        function, parameter = self.library
        return inspect.signature(getattr(cnncodes, function)).parameters[parameter].default


def library_option(*flags: str, library: tuple[str, str], **settings: Any) -> Callable[[Command], Command]:
    return click.option(*flags, cls=LibraryDefault, library=library, **settings)


def format_option(*formats: str) -> Callable[[Command], Command]:
    """``--format``: the first of ``formats`` (a table) is for people, json (and csv) for programs."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(formats),
        default=formats[0],
        show_default=True,
        help="How to print the result: a table for people, " + " or ".join(formats[1:]) + " for programs.",
    )


def dask_option(function: Command) -> Command:
    return click.option(
        "--dask",
        "dask_address",
        default=None,
        metavar="ADDRESS|local:N",
        help="Run on a dask cluster: a scheduler address or local:N worker processes (needs cnncodes[dask]).",
    )(function)


def trust_option(function: Command) -> Command:
    return click.option(
        "--trust",
        "trusted",
        is_flag=True,
        help="Also read a joblib model file (the first model format). "
        "WARNING: joblib (pickle) files run code when loaded; use only for files you made.",
    )(function)


def report_option(function: Command) -> Command:
    folder = click.Path(file_okay=False, path_type=Path)
    return click.option(
        "--report",
        "report_dir",
        type=folder,
        default=None,
        help="Also write a report into this folder: index.html (open it in a browser) and its files.",
    )(function)


def library_errors(function: Command) -> Command:
    """Turn a CnnCodesError into click's one-line 'Error: ...' and exit code 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except cnncodes.CnnCodesError as error:
            raise click.ClickException(str(error)) from error

    return wrapper


def parse_params(context: click.Context, option: click.Parameter, texts: tuple[str, ...]) -> dict[str, Any] | None:
    """``C=0.001`` -> {"C": 0.001}; values are read as JSON when they can be (numbers, null), else as a number
    (``inf``), else kept as text. A name given twice is refused."""
    fixed: dict[str, Any] = {}
    for text in texts:
        name, separator, value = text.partition("=")
        if not separator or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {text!r}", context, option)
        if name in fixed:
            raise click.BadParameter(f"{name} is given twice ({name}={fixed[name]!r} and {text!r})", context, option)
        try:
            fixed[name] = json.loads(value)
        except ValueError:
            try:
                fixed[name] = float(value)  # inf, nan, 1e-3: what Python reads as a number and JSON does not
            except ValueError:
                fixed[name] = value
    return fixed or None
