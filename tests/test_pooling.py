"""Tests of pooling, view combination and normalization against plain numpy written out by hand."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnncodes.errors import InputError
from cnncodes.params import COMBINES, NORMALIZATIONS, POOLINGS, POWER_EXPONENT
from cnncodes.pooling import code_length, combine_views, normalize_codes, pool

RNG = np.random.default_rng(0)
MAPS = RNG.normal(size=(2, 3, 5, 7)).astype(np.float32)  # n, c, h, w: odd sizes make uneven grid cells
MAPS.setflags(write=False)


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "raw"])
@pytest.mark.parametrize("method", POOLINGS)
def test_pool_global_matches_numpy(method: str, relu: bool) -> None:
    """Check global avg, max and GeM pooling (with and without ReLU) against their formulas."""
    x = np.maximum(MAPS, 0) if relu else MAPS
    expected = {
        "avg": x.mean(axis=(2, 3)),
        "max": x.max(axis=(2, 3)),
        "gem": (np.maximum(x, 1e-12) ** 3.0).mean(axis=(2, 3)) ** (1 / 3.0),
    }[method]
    got = pool(MAPS, method=method, relu=relu)
    assert got.dtype == np.float32 and got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_pool_gem_exponent() -> None:
    """Check that gem_p is the exponent of GeM: p=1 is average pooling, p=2 the root mean square."""
    positive = np.abs(MAPS) + 0.1
    np.testing.assert_allclose(pool(positive, method="gem", gem_p=1.0), positive.mean(axis=(2, 3)), rtol=1e-5)
    root_mean_square = np.sqrt((positive**2).mean(axis=(2, 3)))
    np.testing.assert_allclose(pool(positive, method="gem", gem_p=2.0), root_mean_square, rtol=1e-5)


def test_pool_grid_cells_are_adaptive_and_channel_major() -> None:
    """Check grid pooling: uneven cells as torch's adaptive pooling cuts them, codes ordered channel, row, column."""
    got = pool(MAPS, method="max", relu=False, grid=2)
    assert got.shape == (2, code_length(3, 2)) == (2, 12)
    rows, cols = [(0, 3), (2, 5)], [(0, 4), (3, 7)]  # 5 rows and 7 columns into 2 overlapping cells each
    expected = np.stack(
        [MAPS[:, :, r0:r1, c0:c1].max(axis=(2, 3)) for r0, r1 in rows for c0, c1 in cols], axis=-1
    ).reshape(2, -1)
    np.testing.assert_array_equal(got, expected)


def test_pool_vectors_pass_through() -> None:
    """Check that a tap that is already a vector (n, c) is not pooled, only ReLU'd when asked."""
    vectors = np.array([[-1.0, 2.0]], np.float32)
    assert pool(vectors, relu=True).tolist() == [[0.0, 2.0]]
    assert pool(vectors, method="gem", relu=False).tolist() == [[-1.0, 2.0]]


@pytest.mark.parametrize("how", COMBINES)
def test_combine_views(how: str) -> None:
    """Check that the views of each image (consecutive rows) combine by mean, sum, max, or concatenate."""
    codes = np.arange(12, dtype=np.float32).reshape(6, 2)  # 2 images x 3 views x 2 dims
    grouped = codes.reshape(2, 3, 2)
    expected = {
        "mean": grouped.mean(axis=1),
        "sum": grouped.sum(axis=1),
        "max": grouped.max(axis=1),
        "none": grouped.reshape(2, 6),
    }[how]
    np.testing.assert_array_equal(combine_views(codes, 3, how), expected)
    assert combine_views(codes, 1, how) is codes  # one view: nothing to combine


@pytest.mark.parametrize("how", NORMALIZATIONS)
def test_normalize_codes(how: str) -> None:
    """Check none, L2 and signed power normalization (exponent POWER_EXPONENT, then L2)."""
    codes = np.array([[-4.0, 9.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
    powered = np.sign(codes) * np.abs(codes) ** POWER_EXPONENT
    expected = {
        "none": codes,
        "l2": codes / np.linalg.norm(codes, axis=1, keepdims=True),
        "power": powered / np.linalg.norm(powered, axis=1, keepdims=True),
    }[how]
    np.testing.assert_allclose(normalize_codes(codes, how), expected, rtol=1e-6)


def test_normalize_zero_rows_stay_zero() -> None:
    """Check that an all-zero code normalizes to zeros, not NaN."""
    assert normalize_codes(np.zeros((1, 3), np.float32), "l2").tolist() == [[0.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: pool(MAPS, method="mean"),
            "The 'pooling' parameter must be one of 'avg', 'max', 'gem'. Got 'mean' instead.",
        ),
        (
            lambda: combine_views(MAPS[:, :, 0, 0], 2, "median"),
            "The 'combine' parameter must be one of 'mean', 'sum', 'max', 'none'. Got 'median' instead.",
        ),
        (
            lambda: normalize_codes(MAPS[:, :, 0, 0], "l1"),
            "The 'normalize' parameter must be one of 'none', 'l2', 'power'. Got 'l1' instead.",
        ),
    ],
    ids=["pooling", "combine", "normalize"],
)
def test_unknown_method_names_the_choices(call, message: str) -> None:
    """Check that an unknown method is refused with the declared choices."""
    with pytest.raises(InputError, match="^" + re.escape(message) + "$"):
        call()
