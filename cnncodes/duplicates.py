"""Duplicates: groups of near-duplicate images (same bytes, re-encodes, resizes, crops, edits) from their codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .codeindex import CodeIndex
from .errors import InputError
from .messages import invalid_value_message
from .similarity import load_codes

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

    from .engine import RunSettings

__all__ = ["DuplicateGroups", "find_duplicates", "group_pairs", "contrast", "DEFAULT_THRESHOLD"]

# Two images are one photo when their cosine similarity stands out from each one's background: the
# similarity to its 16th most similar image (at least 0.5). One cosine threshold cannot serve every
# collection: distinct chest X-rays are 0.88 alike (median 16th neighbour) while a 5 degree rotation of a
# photo can fall to 0.8. The contrast (cosine - background) / (1 - background) from which a pair is
# linked, and the background's rank and floor, were chosen on scripts/bench_duplicates.py and chest_xray
# (README, Search section).
DEFAULT_THRESHOLD = 0.6
_BACKGROUND_RANK = 16
_BACKGROUND_FLOOR = 0.5  # also the background in collections of fewer than _BACKGROUND_RANK + 1 images
_MAX_NEIGHBORS = 64  # candidates per image: a group larger than this still joins through its members


@dataclass
class DuplicateGroups:
    """Groups of near-duplicate images (two or more each) and the images that failed.

    Examples
    --------
    See :func:`find_duplicates`.
    """

    groups: list[list[str]]  # paths in input order; groups ordered by their first member
    n_images: int
    threshold: float
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def pairs(self) -> set[tuple[str, str]]:
        """Every pair of paths that share a group, each pair sorted.

        Returns
        -------
        set of (str, str)
        """
        return {(a, b) if a < b else (b, a) for g in self.groups for i, a in enumerate(g) for b in g[i + 1 :]}

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"groups": [[path, ...], ...]}``.

        Returns
        -------
        dict
        """
        return {"groups": self.groups}


def group_pairs(n_items: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components of ``pairs`` (union-find): groups of two or more items, in item order.

    Parameters
    ----------
    n_items : int
        Items are 0 .. n_items - 1.
    pairs : ndarray of shape (n_pairs, 2), int
        Edges.

    Returns
    -------
    list of list of int
        Each group sorted, groups ordered by their first item.

    Examples
    --------
    >>> group_pairs(6, np.array([[0, 3], [4, 3], [1, 5]]))
    [[0, 3, 4], [1, 5]]
    """
    parent = np.arange(n_items)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees flat
            i = parent[i]
        return int(i)

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for i in range(n_items):
        members.setdefault(root(i), []).append(i)
    return sorted((group for group in members.values() if len(group) > 1), key=lambda g: g[0])


def contrast(scores: np.ndarray, background: np.ndarray) -> np.ndarray:
    """How far cosine similarities stand out from a background similarity: (s - b) / (1 - b).

    Parameters
    ----------
    scores : ndarray
        Cosine similarities.
    background : ndarray
        Background similarities, broadcast against ``scores``.

    Returns
    -------
    ndarray
        1 for identical codes, 0 at the background, negative below it.

    Examples
    --------
    >>> contrast(np.array([0.95, 0.9, 1.0]), np.array([0.9, 0.9, 1.0])).round(3).tolist()
    [0.5, 0.0, 1.0]
    """
    room = 1 - background
    return np.divide(scores - background, room, out=(scores >= 1).astype(np.float64), where=room > 0)


def _near_pairs(codes: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs (i, j) of rows whose contrast against the larger of their two backgrounds reaches ``threshold``."""
    n = len(codes)
    index = CodeIndex(n_neighbors=min(_MAX_NEIGHBORS, n)).fit(codes)
    scores, rows = index.kneighbors(codes)
    others = np.where(rows == np.arange(n)[:, None], -np.inf, scores)  # each image is its own first neighbour
    if n - 1 >= _BACKGROUND_RANK:
        ranked = -np.sort(-others, axis=1)
        background = np.maximum(ranked[:, _BACKGROUND_RANK - 1], _BACKGROUND_FLOOR)
    else:
        background = np.full(n, _BACKGROUND_FLOOR)
    pair_background = np.maximum(background[:, None], background[rows])
    # float32 rounding: identical codes may score a hair under 1
    near = (contrast(np.minimum(others + 1e-6, 1), pair_background) >= threshold) & np.isfinite(others)
    return np.column_stack([np.nonzero(near)[0], rows[near]])


def find_duplicates(
    data: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    features: Mapping[str, Any] | None = None,
    **run: Unpack[RunSettings],
) -> DuplicateGroups:
    """Group images that are the same photo: identical bytes, or codes that stand out as alike.

    Two images are linked when their files have the same sha256, or when the cosine similarity
    s of their codes stands out from the background b of both, the similarity of each to its
    16th most similar image (at least 0.5; 0.5 in collections of 16 images or fewer): the
    contrast (s - b) / (1 - b) is at least ``threshold``. Groups are the connected parts. The
    background makes one threshold work on collections where every image looks alike (chest
    X-rays) as on varied photos.

    Parameters
    ----------
    data : str, Path or sequence
        A folder, a CSV, image files and folders, or a codes file written by ``extract``.
    threshold : float, default=0.6
        Contrast from which two images are near-duplicates, in (0, 1]; 1 keeps only images
        with identical codes (in practice: identical pixels). Lower finds more.
    features : mapping or None, default=None
        Extraction options that make the codes; None: extract's defaults (penultimate codes).
    run : keyword arguments
        Run options of :func:`cnncodes.extract` (``cache``, ``device``, ``progress``, ...); bad images are skipped.

    Returns
    -------
    DuplicateGroups

    Raises
    ------
    InputError
        For a threshold outside (0, 1] or a missing input.

    Examples
    --------
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> ant, bee = (sorted(Path(f"../shared/data/hymenoptera/val/{c}").glob("*.jpg"))[0] for c in ("ants", "bees"))
    >>> photos = [Image.open(ant), Image.open(bee)]
    >>> photos.append(photos[0].resize((photos[0].width // 2, photos[0].height // 2)))
    >>> found = find_duplicates(photos, cache=False, progress=False)
    >>> found.groups
    [['<image 0>', '<image 2>']]
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise InputError(invalid_value_message("threshold", "a number in (0, 1]", threshold))
    loaded = load_codes(data, features=features, **run)
    n = len(loaded.codes)
    edges = [np.empty((0, 2), np.int64)]
    by_key: dict[str, int] = {}
    for i, key in enumerate(loaded.keys):
        if key and key in by_key:  # same bytes: a duplicate whatever the codes say
            edges.append(np.array([[by_key[key], i]]))
        by_key.setdefault(key, i)
    if n > 1:
        edges.append(_near_pairs(loaded.codes, threshold))
    groups = group_pairs(n, np.concatenate(edges))
    named = [[loaded.paths[i] for i in group] for group in groups]
    return DuplicateGroups(named, n, float(threshold), loaded.failures)
