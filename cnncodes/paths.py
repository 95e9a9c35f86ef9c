"""Where cnncodes keeps its files: the user cache folder, built models, the shipped model cards."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

__all__ = ["default_cache_dir", "models_dir", "cards_dir", "package_file"]


def default_cache_dir() -> Path:
    """The cache folder: ``CNNCODES_CACHE`` if set, else ``$XDG_CACHE_HOME/cnncodes`` (``~/.cache/cnncodes``).

    Returns
    -------
    Path
        It may not exist yet.

    Examples
    --------
    >>> default_cache_dir().name in ("cnncodes",) or "CNNCODES_CACHE" in os.environ
    True
    """
    override = os.environ.get("CNNCODES_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnncodes"


def models_dir() -> Path:
    """Where built and downloaded ONNX files, weights and TensorRT caches go.

    Never the installed package or the source tree. Model cards placed here join the zoo.

    Returns
    -------
    Path
        ``CNNCODES_MODELS_DIR`` if set, else ``<cache>/models``; the folder may not exist yet.

    Examples
    --------
    >>> models_dir().name == "models" or "CNNCODES_MODELS_DIR" in os.environ
    True
    """
    override = os.environ.get("CNNCODES_MODELS_DIR")
    return Path(override).expanduser() if override else default_cache_dir() / "models"


def cards_dir() -> Path:
    """The model cards shipped with cnncodes (the repository's ``models_onnx/``, package data when installed).

    Examples
    --------
    >>> (cards_dir() / "efficientnet_lite0.json").is_file()
    True
    """
    return Path(str(resources.files("cnncodes.models_onnx")))


def package_file(name: str) -> Path:
    """A data file shipped inside the cnncodes package, e.g. ``imagenet_classes.txt``.

    Examples
    --------
    >>> package_file("imagenet_classes.txt").is_file()
    True
    """
    return Path(str(resources.files("cnncodes") / name))
