"""Tensors to codes: ReLU, spatial pooling (avg, max, GeM, on a grid), view combination, normalization."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .messages import one_of_message
from .params import COMBINES, NORMALIZATIONS, POOLINGS, POWER_EXPONENT

__all__ = ["pool", "combine_views", "normalize_codes", "code_length"]

_EPS = 1e-12
_COMBINERS = {"mean": np.mean, "sum": np.sum, "max": np.max}  # "none" concatenates instead


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(one_of_message(name, allowed, value))


def code_length(channels: int, grid: int | None = None) -> int:
    """Length of one view's code: channels, times grid x grid cells when pooled on a grid.

    Parameters
    ----------
    channels : int
        Channels of the tap.
    grid : int or None, default=None
        Cells per side; None pools globally.

    Returns
    -------
    int

    Examples
    --------
    >>> code_length(80), code_length(80, grid=2)
    (80, 320)
    """
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
        A tap's output; (n, c) tensors are already codes and pass through.
    method : {"avg", "max", "gem"}, default="avg"
        Spatial pooling; GeM is ``mean(x ** p) ** (1 / p)`` (on ReLU'd or clipped-at-zero values).
    relu : bool, default=True
        Apply ReLU first (for pre-activation tensors).
    grid : int or None, default=None
        Pool each of ``grid x grid`` cells separately; the code is channel-major,
        ``c * grid * grid`` long. None pools globally.
    gem_p : float, default=3.0
        Exponent of GeM pooling.

    Returns
    -------
    ndarray of shape (n, code_length(c, grid)), float32

    Raises
    ------
    InputError
        For an unknown pooling method.

    Examples
    --------
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2) - 2
    >>> pool(x).tolist(), pool(x, method="max", relu=False).tolist()
    ([[0.25, 3.5]], [[1.0, 5.0]])
    """
    _check("pooling", method, POOLINGS)
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
    """Combine the codes of consecutive views of each image.

    Parameters
    ----------
    codes : ndarray of shape (n * n_views, d)
        The views of each image in consecutive rows.
    n_views : int
        Views per image.
    how : {"mean", "sum", "max", "none"}, default="mean"
        "none" concatenates the views' codes.

    Returns
    -------
    ndarray of shape (n, d), or (n, n_views * d) for "none"

    Raises
    ------
    InputError
        For an unknown way to combine.

    Examples
    --------
    >>> codes = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    >>> combine_views(codes, 2).tolist(), combine_views(codes, 2, "none").tolist()
    ([[2.0, 4.0]], [[1.0, 2.0, 3.0, 6.0]])
    """
    _check("combine", how, COMBINES)
    if n_views == 1:
        return codes
    grouped = codes.reshape(-1, n_views, codes.shape[1])
    if how == "none":
        return grouped.reshape(grouped.shape[0], -1)
    return _COMBINERS[how](grouped, axis=1).astype(np.float32)


def normalize_codes(codes: np.ndarray, how: str = "none") -> np.ndarray:
    """Normalize rows: none, L2, or the signed power ``sign(a) * |a| ** POWER_EXPONENT`` followed by L2.

    Parameters
    ----------
    codes : ndarray of shape (n, d)
        Codes of one tap.
    how : {"none", "l2", "power"}, default="none"
        The exponent of "power" is the fixed constant ``params.POWER_EXPONENT`` (0.5).

    Returns
    -------
    ndarray of shape (n, d), float32

    Raises
    ------
    InputError
        For an unknown normalization.

    Examples
    --------
    >>> normalize_codes(np.array([[3.0, 4.0]], np.float32), "l2").tolist()
    [[0.6000000238418579, 0.800000011920929]]
    >>> powered = normalize_codes(np.array([[9.0, 16.0]], np.float32), "power")  # sqrt: [[3, 4]], then L2
    >>> np.allclose(powered, [[0.6, 0.8]])
    True
    """
    _check("normalize", how, NORMALIZATIONS)
    if how == "none":
        return codes
    if how == "power":
        codes = np.sign(codes) * np.abs(codes) ** POWER_EXPONENT
    norms = np.linalg.norm(codes, axis=1, keepdims=True)
    return (codes / np.maximum(norms, _EPS)).astype(np.float32)
