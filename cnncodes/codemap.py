"""A 2-D map of CNN codes (t-SNE, or UMAP when installed) and each class's most and least typical images."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .extras import import_extra
from .messages import one_of_message

__all__ = ["CodeMap", "map_codes", "typical_order", "MAP_METHODS", "MAX_MAP_POINTS"]

MAP_METHODS = ("auto", "tsne", "umap")
MAX_MAP_POINTS = 2000  # more take t-SNE minutes on a small machine and draw as a blot: a random sample is mapped
_EXACT_TSNE_POINTS = 300  # below this, exact t-SNE is faster than Barnes-Hut (measured: 3x at 153 codes)
_PCA_DIMS = 50  # t-SNE's usual first step: the neighbours of 50 principal components are those of the codes


@dataclass
class CodeMap:
    """Map positions of some of the codes.

    Examples
    --------
    See :func:`map_codes`.
    """

    points: np.ndarray  # (n_mapped, 2) float
    indices: np.ndarray  # (n_mapped,) rows of the codes that were mapped, ascending
    method: str  # "t-SNE" or "UMAP"

    def describe(self, n_codes: int) -> str:
        """What the map shows, as a caption: the method and how many codes are drawn."""
        sample = f" (a random sample of {len(self.indices)})" if len(self.indices) < n_codes else ""
        return f"{self.method} map of {n_codes} codes{sample}"


def _normalized(X: np.ndarray) -> np.ndarray:
    """L2-normalized rows: closeness by direction, which is what CNN codes carry (Razavian et al.)."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def map_codes(
    X: np.ndarray, *, method: str = "auto", random_state: int = 0, max_points: int = MAX_MAP_POINTS
) -> CodeMap:
    """Place codes on a plane so that images with similar codes lie close together.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Codes.
    method : {"auto", "tsne", "umap"}, default="auto"
        "auto": UMAP when ``umap-learn`` is installed (extra ``umap``), else t-SNE
        from scikit-learn.
    random_state : int, default=0
        Seed of the map and of the sample.
    max_points : int, default=2000
        Map at most this many codes, a random sample of them beyond.

    Returns
    -------
    CodeMap

    Raises
    ------
    InputError
        For an unknown method.
    MissingExtraError
        For ``method="umap"`` without umap-learn.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (10, 8)) + 5, rng.normal(0, 1, (10, 8)) - 5])
    >>> code_map = map_codes(X, method="tsne")
    >>> code_map.points.shape, code_map.method, code_map.describe(20)
    ((20, 2), 't-SNE', 't-SNE map of 20 codes')
    """
    if method not in MAP_METHODS:
        raise InputError(one_of_message("map method", MAP_METHODS, method))
    n_samples = len(X)
    indices = np.arange(n_samples)
    if n_samples > max_points:
        indices = np.sort(np.random.default_rng(random_state).choice(n_samples, max_points, replace=False))
    data = _normalized(np.asarray(X)[indices])
    use_umap = method == "umap" or (method == "auto" and importlib.util.find_spec("umap") is not None)
    if len(data) < 4:  # too few neighbours for either method: spread them on a line
        return CodeMap(np.column_stack([np.arange(len(data), dtype=float), np.zeros(len(data))]), indices, "t-SNE")
    if use_umap:
        umap = import_extra("umap", "umap", "a UMAP code map")
        reducer = umap.UMAP(n_neighbors=min(15, len(data) - 1), random_state=random_state)
        return CodeMap(np.asarray(reducer.fit_transform(data), dtype=float), indices, "UMAP")
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if data.shape[1] > _PCA_DIMS and len(data) > _PCA_DIMS:
        data = PCA(_PCA_DIMS, random_state=random_state).fit_transform(data)
    perplexity = float(min(30.0, (len(data) - 1) / 3))
    algorithm = "exact" if len(data) <= _EXACT_TSNE_POINTS else "barnes_hut"
    tsne = TSNE(2, perplexity=perplexity, init="pca", method=algorithm, random_state=random_state)
    return CodeMap(np.asarray(tsne.fit_transform(data), dtype=float), indices, "t-SNE")


def typical_order(X: np.ndarray, labels: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each class's rows by distance of their (L2-normalized) codes to the class mean, nearest first.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Codes.
    labels : ndarray of shape (n_samples,)
        Class index of each row.

    Returns
    -------
    dict
        Class index -> (rows, distances), both ordered from the most typical image
        (nearest the mean) to the least typical.

    Examples
    --------
    >>> X = np.array([[1.0, 0.0], [1.0, 0.1], [0.2, 1.0], [0.0, 1.0]])
    >>> order = typical_order(X, np.array([0, 0, 0, 1]))
    >>> order[0][0].tolist(), order[1][0].tolist()
    ([1, 0, 2], [3])
    """
    data = _normalized(X)
    labels = np.asarray(labels)
    order = {}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        distances = np.linalg.norm(data[rows] - data[rows].mean(axis=0), axis=1)
        ranked = np.argsort(distances, kind="stable")
        order[int(label)] = (rows[ranked], distances[ranked])
    return order
