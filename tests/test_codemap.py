"""Tests of the code map (t-SNE on real scikit-learn) and of the typical / atypical order of each class."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cnncodes.codemap import map_codes, typical_order
from cnncodes.errors import InputError, MissingExtraError


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Two groups of 30 codes pointing in different directions, as two classes of CNN codes do."""
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.2, (30, 64)) + np.eye(64)[0] * 4
    b = rng.normal(0, 0.2, (30, 64)) + np.eye(64)[1] * 4
    return np.vstack([a, b]).astype(np.float32), np.repeat([0, 1], 30)


def test_map_codes_keeps_neighbours_together(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    """Check that on the t-SNE map every point's nearest neighbour is of its own group."""
    X, y = blobs
    code_map = map_codes(X, method="tsne")
    assert (
        code_map.method == "t-SNE" and code_map.points.shape == (60, 2) and code_map.indices.tolist() == list(range(60))
    )
    distances = np.linalg.norm(code_map.points[:, None] - code_map.points[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    assert (y[distances.argmin(axis=1)] == y).all()
    np.testing.assert_allclose(map_codes(X, method="tsne").points, code_map.points)  # seeded: the same map again


def test_map_codes_samples_beyond_the_cap(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    """Check that more codes than max_points are mapped as a sorted random sample, and the caption says so."""
    code_map = map_codes(blobs[0], method="tsne", max_points=20)
    assert len(code_map.indices) == 20 and np.all(np.diff(code_map.indices) > 0)
    assert code_map.describe(60) == "t-SNE map of 60 codes (a random sample of 20)"


def test_map_codes_of_very_few_codes() -> None:
    """Check that fewer than four codes (too few for t-SNE) are laid on a line rather than failing."""
    code_map = map_codes(np.ones((3, 5)))
    assert code_map.points.tolist() == [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]


def test_map_codes_bad_method() -> None:
    """Check the messages for an unknown method and for UMAP without umap-learn installed."""
    expected = "The 'map method' parameter must be one of 'auto', 'tsne', 'umap'. Got 'pca' instead."
    with pytest.raises(InputError, match=re.escape(expected)):
        map_codes(np.ones((5, 2)), method="pca")
    with pytest.raises(MissingExtraError, match=re.escape("a UMAP code map needs umap (")):
        map_codes(np.ones((5, 2)), method="umap")


def test_typical_order_by_distance_to_the_class_mean(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    """Check each class's order against a direct computation on L2-normalized codes, nearest first."""
    X, y = blobs
    X = X.copy()
    X[5] = np.eye(64)[1] * 4  # an "ant" that looks like a bee: the least typical ant
    order = typical_order(X, y)
    assert sorted(order) == [0, 1]
    for label, (rows, distances) in order.items():
        unit = X[y == label] / np.linalg.norm(X[y == label], axis=1, keepdims=True)
        expected = np.linalg.norm(unit - unit.mean(axis=0), axis=1)
        np.testing.assert_allclose(distances, np.sort(expected), rtol=1e-6)
        assert sorted(rows.tolist()) == np.flatnonzero(y == label).tolist()
    assert order[0][0][-1] == 5
