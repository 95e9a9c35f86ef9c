"""Tests of CodeIndex: exact blocked cosine search, PCA-whitening, faiss, the k-neighbours graph, sklearn's checks."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks

from cnncodes import CNNCodes, codeindex
from cnncodes.codeindex import CodeIndex, normalize_rows
from cnncodes.errors import InputError


def _clustered(n_clusters: int = 40, per_cluster: int = 25, n_features: int = 64, seed: int = 0) -> np.ndarray:
    """Non-negative codes in clusters, as ReLU'd CNN codes are."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, size=(n_clusters, n_features))
    codes = centres.repeat(per_cluster, axis=0) + 0.3 * rng.gamma(1.0, size=(n_clusters * per_cluster, n_features))
    codes.setflags(write=False)
    return codes.astype(np.float32)


def _brute_force(index: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = normalize_rows(queries.astype(np.float64)) @ normalize_rows(index.astype(np.float64)).T
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, rows, axis=1), rows


# The array API checks need SCIPY_ARRAY_API and array-api-strict; CodeIndex is numpy-only.
NOT_APPLICABLE = {"check_array_api_input"}
CHECKS = [
    (estimator, check)
    for template in (CodeIndex(), CodeIndex(n_neighbors=2, normalize="power", batch_size=3))
    for estimator, check in estimator_checks.estimator_checks_generator(template, mark=None)
    if check.func.__name__ not in NOT_APPLICABLE
]


@pytest.mark.parametrize("estimator, check", CHECKS, ids=[f"{e!r}-{c.func.__name__}" for e, c in CHECKS])
def test_code_index_passes_sklearn_check(estimator: CodeIndex, check: object) -> None:
    """Check that CodeIndex passes every check of scikit-learn's full suite (it takes numeric codes)."""
    check(estimator)


def test_code_index_exact_search_matches_brute_force_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that blocked exact search (small index and query blocks) equals a brute-force cosine ranking."""
    monkeypatch.setattr(codeindex, "_INDEX_BLOCK_ROWS", 37)  # many index blocks, so top-k merging is exercised
    codes = _clustered()
    queries = codes[::7] + 0.01
    scores, rows = CodeIndex(n_neighbors=6, batch_size=16).fit(codes).kneighbors(queries)
    expected_scores, expected_rows = _brute_force(codes, queries, 6)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert (rows == expected_rows).mean() > 0.99  # exact up to float32 ties
    assert scores.dtype == np.float32 and rows.dtype == np.int64


def test_code_index_neighbors_capped_at_index_size() -> None:
    """Check that asking for more neighbours than indexed codes returns every code, best first."""
    scores, rows = CodeIndex(n_neighbors=10).fit([[1.0, 0.0], [0.0, 1.0]]).kneighbors([[1.0, 0.2]])
    assert rows.tolist() == [[0, 1]] and scores[0, 0] > scores[0, 1]


def test_code_index_transform_is_a_cosine_distance_graph() -> None:
    """Check that transform gives a sparse (n_queries, n_index) matrix of 1 - cosine at the k nearest."""
    codes = _clustered(n_clusters=5, per_cluster=4)
    index = CodeIndex(n_neighbors=3).fit(codes)
    graph = index.transform(codes[:4])
    scores, rows = index.kneighbors(codes[:4])
    assert graph.shape == (4, 20) and graph.nnz == 12
    np.testing.assert_allclose(graph[np.arange(4)[:, None], rows].toarray(), np.clip(1 - scores, 0, None), atol=1e-6)


def test_code_index_whitening_keeps_components_and_unit_length() -> None:
    """Check that whiten=N keeps N PCA components, whitened, and the indexed codes stay unit length."""
    codes = _clustered()
    index = CodeIndex(whiten=16).fit(codes)
    assert index.codes_.shape == (1000, 16) and index.pca_.n_components_ == 16 and index.pca_.whiten
    np.testing.assert_allclose(np.linalg.norm(index.codes_, axis=1), 1, atol=1e-5)
    _, rows = index.kneighbors(codes[:50])
    assert (rows[:, 0] == np.arange(50)).all()  # each code is still its own nearest


def test_code_index_faiss_recall_against_exact() -> None:
    """Check that faiss' HNSW index finds at least 95% of the exact top 10 on clustered codes."""
    codes = _clustered()
    queries = codes[::5] * 1.01 + 0.05
    _, exact = CodeIndex(n_neighbors=10).fit(codes).kneighbors(queries)
    approximate = CodeIndex(n_neighbors=10, method="faiss").fit(codes)
    scores, rows = approximate.kneighbors(queries)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact)])
    assert recall >= 0.95
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_code_index_faiss_pickles_without_its_index() -> None:
    """Check that a fitted faiss CodeIndex pickles (the faiss index is dropped) and searches the same after."""
    codes = _clustered(n_clusters=10, per_cluster=10)
    index = CodeIndex(n_neighbors=3, method="faiss").fit(codes)
    before = index.kneighbors(codes[:5])[1]
    restored = pickle.loads(pickle.dumps(index))
    assert restored._faiss_index is None
    assert (restored.kneighbors(codes[:5])[1] == before).all()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_neighbors": 0}, "The 'n_neighbors' parameter of CodeIndex must be a positive int. Got 0 instead."),
        ({"whiten": 0}, "The 'whiten' parameter of CodeIndex must be a positive int or None. Got 0 instead."),
        (
            {"method": "annoy"},
            "The 'method' parameter of CodeIndex must be one of 'exact', 'faiss'. Got 'annoy' instead.",
        ),
        (
            {"normalize": "none"},
            "The 'normalize' parameter of CodeIndex must be one of 'l2', 'power'. Got 'none' instead.",
        ),
    ],
    ids=["n_neighbors", "whiten", "method", "normalize"],
)
def test_code_index_bad_parameter_is_named_at_fit(params: dict, message: str) -> None:
    """Check that a bad parameter raises at fit, in scikit-learn's wording, naming the parameter."""
    index = CodeIndex(**params)  # no validation in __init__
    with pytest.raises(InputError, match=re.escape(message)):
        index.fit([[1.0, 2.0]])


def test_code_index_in_a_pipeline_after_cnncodes(image_dir, default_backbone, cache_path) -> None:
    """Check that Pipeline([CNNCodes, CodeIndex]) indexes real images and that clone/pickle keep it working."""
    paths = sorted(str(p) for p in image_dir.rglob("*.jpg"))
    pipeline = Pipeline([("codes", CNNCodes(cache=str(cache_path))), ("index", CodeIndex(n_neighbors=2))])
    graph = pipeline.fit(paths).transform(paths)
    assert graph.shape == (6, 6) and graph.nnz == 12
    assert np.allclose(graph.diagonal(), 0, atol=1e-5)  # each image is its own nearest, at distance 0
    restored = pickle.loads(pickle.dumps(pipeline))
    assert (restored.transform(paths[:2]) != graph[:2]).nnz == 0
    assert clone(pipeline).get_params()["index__n_neighbors"] == 2
