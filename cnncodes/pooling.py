"""Tensors to codes: ReLU, spatial pooling (avg, max, GeM, on a grid), view combination, normalization."""

from __future__ import annotations

import numpy as np

__all__ = ["POOLINGS", "COMBINES", "NORMALIZATIONS", "pool", "combine_views", "normalize_codes", "code_length"]

POOLINGS = ("avg", "max", "gem")
COMBINES = ("mean", "sum", "max", "none")
NORMALIZATIONS = ("none", "l2", "power")
_EPS = 1e-12


def code_length(channels: int, grid: int | None = None) -> int:
    """Length of one view's code: channels, times grid x grid cells when pooled on a grid."""
    return channels * (grid * grid if grid else 1)


def _cells(size: int, grid: int) -> list[tuple[int, int]]:
    """Adaptive-pooling cell bounds along one axis (as torch's adaptive pooling)."""
    return [((i * size) // grid, -((-(i + 1) * size) // grid)) for i in range(grid)]


def pool(
    tensor: np.ndarray, *, method: str = "avg", relu: bool = True, grid: int | None = None, gem_p: float = 3.0
) -> np.ndarray:
    """Turn a batch of tensors into float32 codes.

    Parameters
    ----------
    tensor : ndarray of shape (n, c, h, w) or (n, c)
        A tap's output.
    method : {"avg", "max", "gem"}, default="avg"
        Spatial pooling; GeM is ``mean(x ** p) ** (1 / p)`` (on ReLU'd or clipped-at-zero values).
    relu : bool, default=True
        Apply ReLU first (for pre-activation tensors).
    grid : int or None, default=None
        Pool each of ``grid x grid`` cells separately; the code is channel-major,
        ``c * grid * grid`` long. None pools globally.
    gem_p : float, default=3.0

    Returns
    -------
    ndarray of shape (n, code_length(c, grid)), float32

    Examples
    --------
    >>> pool(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2) - 2).tolist()
    [[0.25, 3.5]]
    """
    x = np.maximum(tensor, 0) if relu else tensor
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        return np.ascontiguousarray(x)
    if x.ndim != 4:
        x = x.reshape(x.shape[0], x.shape[1], 1, -1)
    if method == "gem":
        x = np.maximum(x, _EPS) ** gem_p
    n, c, h, w = x.shape
    reduce = np.max if method == "max" else np.mean
    if not grid:
        out = reduce(x, axis=(2, 3))
    else:
        out = np.empty((n, c, grid, grid), np.float32)
        for i, (top, bottom) in enumerate(_cells(h, grid)):
            for j, (left, right) in enumerate(_cells(w, grid)):
                out[:, :, i, j] = reduce(x[:, :, top:bottom, left:right], axis=(2, 3))
        out = out.reshape(n, -1)
    if method == "gem":
        out = out ** (1.0 / gem_p)
    return np.ascontiguousarray(out, dtype=np.float32)


def combine_views(codes: np.ndarray, n_views: int, how: str = "mean") -> np.ndarray:
    """Combine consecutive rows of ``n_views`` views per image: (n * v, d) -> (n, d) or (n, v * d) for "none"."""
    if n_views == 1:
        return codes
    grouped = codes.reshape(-1, n_views, codes.shape[1])
    if how == "none":
        return grouped.reshape(grouped.shape[0], -1)
    return {"mean": np.mean, "sum": np.sum, "max": np.max}[how](grouped, axis=1).astype(np.float32)


def normalize_codes(codes: np.ndarray, how: str = "none", power: float = 0.5) -> np.ndarray:
    """Normalize rows: none, L2, or signed power ``sign(a) * |a| ** power`` followed by L2.

    Examples
    --------
    >>> normalize_codes(np.array([[3.0, 4.0]], np.float32), "l2").tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    if how == "none":
        return codes
    if how == "power":
        codes = np.sign(codes) * np.abs(codes) ** power
    norms = np.linalg.norm(codes, axis=1, keepdims=True)
    return (codes / np.maximum(norms, _EPS)).astype(np.float32)
