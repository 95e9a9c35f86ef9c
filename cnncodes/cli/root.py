"""The ``cnncodes`` command group: version, ``--quiet`` and where messages go."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

import click

import cnncodes


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
    warnings.showwarning = _one_line_warning


def _one_line_warning(message: Any, category: type, filename: str, lineno: int, *args: Any, **kwargs: Any) -> None:
    """A warning as a person reads it on the command line: one line, no source code."""
    sys.stderr.write(f"warning: {message}\n")
