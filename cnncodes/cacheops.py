"""Whole-cache operations behind ``cnncodes cache ...``: list, verify, compact and remove feature sets."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from .cache import CodeCache, FeatureSetInfo, ShardDamage

__all__ = ["cache_info", "verify_cache", "compact_cache", "remove_cache"]

_Operation = TypeVar("_Operation", bound=Callable[..., object])
_SELECTION = """Parameters
    ----------
    root : Path, str or None, default=None
        The cache folder; None: :func:`cnncodes.default_cache_dir`.
    prefix : str, default=""
        Start of the fingerprints to select; "" selects all."""


def _on_selection(operation: _Operation) -> _Operation:
    """Give an operation on selected feature sets the one description of its ``root`` and ``prefix``."""
    operation.__doc__ = (operation.__doc__ or "").replace("{selection}", _SELECTION)
    return operation


@_on_selection
def cache_info(root: Path | str | None = None, prefix: str = "") -> list[FeatureSetInfo]:
    """Summaries of the feature sets whose fingerprint starts with ``prefix``.

    {selection}

    Returns
    -------
    list of FeatureSetInfo

    Raises
    ------
    CacheFormatError
        If a feature set was written by a newer cnncodes.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     CodeCache(root, shard_size=1).feature_set({"tap": "demo"}).add(["k"], np.zeros((1, 5), np.float32))
    ...     [(info.spec["tap"], info.n_codes, info.n_features) for info in cache_info(root)]
    [('demo', 1, 5)]
    """
    return [fs.info() for fs in CodeCache(root).find(prefix)]


@_on_selection
def verify_cache(root: Path | str | None = None, prefix: str = "") -> dict[str, list[ShardDamage]]:
    """Read every shard of the selected feature sets completely, checksums included.

    A damaged shard is from then on never served (its keys are computed again); it stays in
    place until removed, so the report can be acted on.

    {selection}

    Returns
    -------
    dict of str to list of ShardDamage
        The damaged shards (none: an empty list) by fingerprint.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     verify_cache(root)
    {}
    """
    return {fs.fingerprint: fs.verify() for fs in CodeCache(root).find(prefix)}


@_on_selection
def compact_cache(root: Path | str | None = None, prefix: str = "") -> dict[str, tuple[int, int]]:
    """Merge each selected feature set's healthy shards into one (duplicate keys dropped), atomically.

    Memory stays bounded (a block of rows at a time). Damaged shards, shards of a newer
    format version or of another width are left alone; temporary files of killed writers
    are removed.

    {selection}

    Returns
    -------
    dict of str to (int, int)
        (shards merged, codes) by fingerprint.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     CodeCache(root, shard_size=1).feature_set({"tap": "demo"}).add(list("aba"), np.zeros((3, 2), np.float32))
    ...     list(compact_cache(root).values())
    [(3, 2)]
    """
    return {fs.fingerprint: fs.compact() for fs in CodeCache(root).find(prefix)}


@_on_selection
def remove_cache(root: Path | str | None = None, prefix: str = "") -> list[FeatureSetInfo]:
    """Delete the selected feature sets.

    {selection}

    Returns
    -------
    removed : list of FeatureSetInfo
        What the feature sets held before they were deleted.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> with tempfile.TemporaryDirectory() as root:
    ...     CodeCache(root, shard_size=1).feature_set({"tap": "gone"}).add(["k"], np.zeros((1, 2), np.float32))
    ...     [info.spec["tap"] for info in remove_cache(root)], list(CodeCache(root))
    (['gone'], [])
    """
    cache = CodeCache(root)
    removed = []
    for fs in cache.find(prefix):
        removed.append(fs.info())
        cache.remove(fs)
    return removed
