"""CodeIndex: a scikit-learn estimator that finds the most similar codes by cosine, exactly or with faiss."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted, validate_data

from .errors import InputError
from .extras import import_extra
from .messages import invalid_value_message, one_of_message

__all__ = ["CodeIndex", "normalize_rows", "SEARCH_NORMALIZATIONS", "SEARCH_METHODS"]

SEARCH_NORMALIZATIONS = ("l2", "power")  # "power": signed square root, then L2
SEARCH_METHODS = ("exact", "faiss")
_HNSW_NEIGHBORS = 32  # faiss HNSW graph degree (M); with _HNSW_EF_SEARCH it sets recall against exact search
_HNSW_EF_SEARCH = 128
_INDEX_BLOCK_ROWS = 65536  # index rows scored at once: a query block costs batch_size x this many floats


def normalize_rows(X: np.ndarray, method: str = "l2") -> np.ndarray:
    """Codes scaled to unit L2 length, after a signed square root for ``method="power"``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Codes.
    method : {"l2", "power"}, default="l2"
        "power" first maps each value v to sign(v) * sqrt(|v|) (Perronnin et al. 2010).

    Returns
    -------
    ndarray of shape (n_samples, n_features)
        Same dtype; an all-zero row stays zero.

    Examples
    --------
    >>> normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    >>> normalize_rows(np.array([[9.0, -16.0]]), "power").round(1).tolist()
    [[0.6, -0.8]]
    """
    if method == "power":
        X = np.sign(X) * np.sqrt(np.abs(X))
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1).astype(X.dtype)


class CodeIndex(TransformerMixin, BaseEstimator):
    """An index of codes that answers "which indexed codes are most like these?" by cosine similarity.

    ``fit(X)`` normalizes the codes (optionally PCA-whitens them, as in the retrieval
    literature) and keeps them; :meth:`kneighbors` returns the ``n_neighbors`` most
    similar indexed rows of each query, scores first. Search is exact by default, in
    blocks so memory stays bounded by ``batch_size`` x 65536 scores whatever the index
    size; ``method="faiss"`` builds an HNSW graph (extra ``faiss``) for millions of
    codes. As a transformer (last step of a Pipeline after :class:`cnncodes.CNNCodes`)
    ``transform(X)`` gives scikit-learn's k-neighbours graph: a sparse
    (n_samples, n_samples_fit) matrix of cosine distances (1 - similarity), as
    :class:`sklearn.neighbors.KNeighborsTransformer` does.

    Parameters
    ----------
    n_neighbors : int, default=5
        Neighbours per query (at most the number of indexed codes).
    normalize : {"l2", "power"}, default="l2"
        How codes are scaled before the inner product; "power" is signed square root then L2.
    whiten : int or None, default=None
        Number of PCA components to keep, whitened and L2-normalized again; None: no PCA.
    method : {"exact", "faiss"}, default="exact"
        Exact search with numpy, or faiss' approximate HNSW index.
    batch_size : int, default=1024
        Query rows scored at once.

    Attributes
    ----------
    codes_ : ndarray of shape (n_samples_fit, n_components)
        The indexed codes, normalized (and whitened).
    pca_ : PCA or None
        The whitening, when ``whiten`` is set.
    n_features_in_ : int
        Length of the codes seen in ``fit``.
    n_samples_fit_ : int
        Number of indexed codes.

    Examples
    --------
    >>> index = CodeIndex(n_neighbors=2).fit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    >>> scores, rows = index.kneighbors(np.array([[1.0, 0.1]]))
    >>> rows.tolist(), scores.round(3).tolist()
    ([[0, 2]], [[0.995, 0.774]])
    >>> index.transform(np.array([[1.0, 0.1]])).toarray().round(3).tolist()
    [[0.005, 0.0, 0.226]]
    """

    def __init__(
        self,
        *,
        n_neighbors: int = 5,
        normalize: str = "l2",
        whiten: int | None = None,
        method: str = "exact",
        batch_size: int = 1024,
    ) -> None:
        # scikit-learn's rule: every parameter stored verbatim under its own name, nothing else
        self.n_neighbors, self.normalize, self.whiten = n_neighbors, normalize, whiten
        self.method, self.batch_size = method, batch_size

    def check_params(self) -> None:
        """Raise a one-line :class:`InputError` for a parameter out of range (``fit`` calls it first).

        Raises
        ------
        InputError
            Naming the parameter, as scikit-learn words it.
        """
        owner = type(self).__name__
        for name in ("n_neighbors", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise InputError(invalid_value_message(name, "a positive int", value, owner))
        if self.whiten is not None and (
            not isinstance(self.whiten, (int, np.integer)) or isinstance(self.whiten, bool) or self.whiten < 1
        ):
            raise InputError(invalid_value_message("whiten", "a positive int or None", self.whiten, owner))
        if self.normalize not in SEARCH_NORMALIZATIONS:
            raise InputError(one_of_message("normalize", SEARCH_NORMALIZATIONS, self.normalize, owner))
        if self.method not in SEARCH_METHODS:
            raise InputError(one_of_message("method", SEARCH_METHODS, self.method, owner))

    def fit(self, X, y=None):
        """Index the codes ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Codes to index.
        y : None
            Ignored.

        Returns
        -------
        self : CodeIndex
        """
        self.check_params()
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.pca_ = None
        codes = normalize_rows(X, self.normalize)
        if self.whiten is not None:
            n_components = min(self.whiten, *X.shape)
            self.pca_ = PCA(n_components=n_components, whiten=True, svd_solver="full").fit(codes)
            codes = normalize_rows(self.pca_.transform(codes).astype(X.dtype))
        self.codes_ = np.ascontiguousarray(codes)
        self.n_samples_fit_ = len(codes)
        self._faiss_index = None
        return self

    def _queries(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        codes = normalize_rows(X, self.normalize)
        if self.pca_ is not None:
            codes = normalize_rows(self.pca_.transform(codes).astype(X.dtype))
        return codes.astype(self.codes_.dtype, copy=False)

    def kneighbors(self, X, n_neighbors=None):
        """The most similar indexed codes of each query, best first.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query codes.
        n_neighbors : int or None, default=None
            None: ``self.n_neighbors``; at most ``n_samples_fit_``.

        Returns
        -------
        scores : ndarray of shape (n_queries, n_neighbors)
            Cosine similarities, descending along each row.
        indices : ndarray of shape (n_queries, n_neighbors), int64
            Rows of the indexed codes.
        """
        queries = self._queries(X)
        k = min(n_neighbors or self.n_neighbors, self.n_samples_fit_)
        blocks = [self._search(block, k) for block in _blocks(queries, self.batch_size)]
        if not blocks:
            return np.empty((0, k), queries.dtype), np.empty((0, k), np.int64)
        return np.concatenate([s for s, _ in blocks]), np.concatenate([i for _, i in blocks])

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "faiss":
            scores, rows = self._get_faiss_index().search(np.ascontiguousarray(queries, np.float32), k)
            return scores.astype(queries.dtype), rows.astype(np.int64)
        best_scores = np.full((len(queries), 0), -np.inf, queries.dtype)
        best_rows = np.empty((len(queries), 0), np.int64)
        for start in range(0, self.n_samples_fit_, _INDEX_BLOCK_ROWS):
            scores = queries @ self.codes_[start : start + _INDEX_BLOCK_ROWS].T
            rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
            best_scores = np.concatenate([best_scores, scores], axis=1)
            best_rows = np.concatenate([best_rows, rows], axis=1)
            if best_scores.shape[1] > k:  # keep only the k best so far
                keep = np.argpartition(-best_scores, k - 1, axis=1)[:, :k]
                best_scores = np.take_along_axis(best_scores, keep, axis=1)
                best_rows = np.take_along_axis(best_rows, keep, axis=1)
        # Descending score; ties by row so results do not depend on the block layout.
        order = np.lexsort((best_rows, -best_scores), axis=1)
        return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(best_rows, order, axis=1)

    def _get_faiss_index(self) -> Any:
        if self._faiss_index is None:
            faiss = import_extra("faiss", "faiss", "CodeIndex(method='faiss')")
            index = faiss.IndexHNSWFlat(self.codes_.shape[1], _HNSW_NEIGHBORS, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = _HNSW_EF_SEARCH
            index.add(np.ascontiguousarray(self.codes_, np.float32))
            self._faiss_index = index
        return self._faiss_index

    def transform(self, X):
        """The k-neighbours graph of ``X``: cosine distances to its ``n_neighbors`` nearest indexed codes.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query codes.

        Returns
        -------
        scipy.sparse.csr_matrix of shape (n_queries, n_samples_fit_)
            ``1 - cosine similarity`` at each query's neighbours, nothing elsewhere.
        """
        scores, rows = self.kneighbors(X)
        n_queries, k = rows.shape
        indptr = np.arange(0, n_queries * k + 1, k)
        distances = np.clip(1 - scores, 0, None).ravel()
        return sparse.csr_matrix((distances, rows.ravel(), indptr), shape=(n_queries, self.n_samples_fit_))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = False
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_faiss_index", None)  # faiss indexes do not pickle; rebuilt on the next search
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "codes_" in state:
            self._faiss_index = None


def _blocks(rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
