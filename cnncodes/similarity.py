"""Similar: the indexed images most like each query image, from codes of one feature set (codes files or the cache)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .codesfile import looks_like_codes_file, read_codes_file
from .codeindex import CodeIndex
from .engine import ExtractionOptions, Extractor
from .errors import InputError
from .extraction import extract
from .featurespec import options_of_codes_spec
from .params import RUN_PARAMETERS

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11 on

    from .engine import RunSettings

__all__ = ["LoadedCodes", "load_codes", "check_same_features", "SimilarityResult", "similar"]

_DESCRIBED = ("model", "tap", "pooling", "grid", "normalize", "combine", "dtype")  # shown when feature sets differ


@dataclass
class LoadedCodes:
    """Codes of some images with their paths, the spec of their feature set, and the images that failed.

    Examples
    --------
    See :func:`load_codes`.
    """

    codes: np.ndarray  # (n, n_features) float32
    paths: list[str]  # one per row, as given
    spec: dict[str, Any]  # "layers" (feature-set spec per tap), "n_features", "options"
    source: str  # what the user named: the codes file, folder or CSV
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    keys: list[str] = field(default_factory=list)  # content sha256 per row


def _source_name(data: Any) -> str:
    if isinstance(data, (str, Path)):
        return str(data)
    items = list(data)
    return str(items[0]) if len(items) == 1 else f"{items[0]} (and {len(items) - 1} more)"


def _single_codes_file(data: Any) -> Path | None:
    items = [data] if isinstance(data, (str, Path)) else list(data) if isinstance(data, (list, tuple)) else []
    if (
        len(items) == 1
        and isinstance(items[0], (str, Path))
        and Path(items[0]).is_file()
        and looks_like_codes_file(items[0])
    ):
        return Path(items[0])
    return None


def load_codes(data: Any, *, features: Mapping[str, Any] | None = None, **run: Any) -> LoadedCodes:
    """Codes of a codes file written by ``extract``, or of images (computed once, then read from the cache).

    Parameters
    ----------
    data : str, Path or sequence
        A codes file, a folder, a CSV, or image files and folders.
    features : mapping or None, default=None
        Options of :func:`cnncodes.extract` that make the codes (``model``, ``layer``,
        ``pooling``, ...); None: extract's defaults. For a codes file, options given here
        must agree with the file's feature set.
    **run
        Run options of :func:`cnncodes.extract` (``cache``, ``batch_size``, ``device``,
        ``n_threads``, ``optimization``, ``n_workers``, ``progress``); bad images are skipped.

    Returns
    -------
    LoadedCodes

    Raises
    ------
    InputError
        For a missing input, or options that disagree with a codes file.

    Examples
    --------
    >>> loaded = load_codes([np.full((8, 8, 3), 9, np.uint8)], features={"layer": "stage4"}, cache=False)
    >>> loaded.codes.shape, loaded.paths, loaded.spec["layers"][0]["tap"]
    ((1, 80), ['<image 0>'], 'stage4')
    """
    codes_file = _single_codes_file(data)
    if codes_file is not None:
        content = read_codes_file(codes_file)
        loaded = LoadedCodes(
            content.codes, content.paths, content.spec, str(codes_file), content.failures, content.keys
        )
        if features:
            wanted = feature_spec({**options_of_codes_spec(content.spec), **features})
            check_same_features(loaded, LoadedCodes(loaded.codes[:0], [], wanted, "the options given"))
        return loaded
    options = {k: v for k, v in run.items() if k in (*RUN_PARAMETERS, "progress") and k != "on_error"}
    result = extract(data, **dict(features or {}), **options, on_error="skip")
    return LoadedCodes(result.codes, result.paths, result.spec, _source_name(data), result.failures, result.keys)


def feature_spec(features: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of the codes these extraction options make, without extracting anything.

    Parameters
    ----------
    features : mapping
        Options of :func:`cnncodes.extract` that make the codes.

    Returns
    -------
    dict
        As :attr:`cnncodes.ExtractionResult.spec`.

    Examples
    --------
    >>> [layer["tap"] for layer in feature_spec({"layer": ("stage4", "penultimate")})["layers"]]
    ['stage4', 'penultimate']
    """
    return Extractor(ExtractionOptions(**dict(features)), cache=False, progress=False).spec()


def _describe(layers: Sequence[Mapping[str, Any]]) -> str:
    parts = [" ".join(str(layer.get(k)) for k in ("model", "tap")) for layer in layers]
    return " + ".join(parts) or "no codes"


def check_same_features(reference: LoadedCodes, other: LoadedCodes) -> None:
    """Refuse, in one line, codes of another feature set than the reference's.

    Parameters
    ----------
    reference, other : LoadedCodes
        Two sets of codes; their specs' feature sets (one per tap) must be equal.

    Raises
    ------
    InputError
        Naming both sources and what differs.

    Examples
    --------
    >>> a = LoadedCodes(np.zeros((0, 2)), [], {"layers": [{"model": "m", "tap": "pool"}]}, "index.h5")
    >>> b = LoadedCodes(np.zeros((0, 2)), [], {"layers": [{"model": "m", "tap": "stage4"}]}, "photos/")
    >>> check_same_features(a, b)
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: photos/: codes of m stage4, but index.h5 holds m pool (tap differs); ...
    """
    mine, theirs = reference.spec.get("layers") or [], other.spec.get("layers") or []
    if json.dumps(mine, sort_keys=True) == json.dumps(theirs, sort_keys=True):
        return
    differing = sorted({k for a, b in zip(mine, theirs) for k in set(a) | set(b) if a.get(k) != b.get(k)})
    what = [k for k in ("model", "tap") if k in differing] or [k for k in _DESCRIBED if k in differing]
    what = what or differing or ["number of layers"]
    message = (
        f"{other.source}: codes of {_describe(theirs)}, but {reference.source} holds {_describe(mine)} "
        f"({', '.join(what)} differs); make both with the same model and options"
    )
    raise InputError(message)


@dataclass
class SimilarityResult:
    """The nearest indexed images of each query, best first, and the images that failed.

    Examples
    --------
    See :func:`similar`.
    """

    results: list[tuple[str, list[tuple[str, float]]]]  # (query path, [(index path, cosine similarity), ...])
    n_indexed: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), index and queries

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"results": [{"query": path, "neighbors": [{"path", "score"}]}]}``.

        Returns
        -------
        dict
        """
        return {
            "results": [
                {"query": query, "neighbors": [{"path": path, "score": score} for path, score in neighbors]}
                for query, neighbors in self.results
            ]
        }


def similar(
    index: Any,
    queries: Any,
    *,
    top_k: int = 5,
    power: bool = False,
    whiten: int | None = None,
    method: str = "exact",
    features: Mapping[str, Any] | None = None,
    **run: Unpack[RunSettings],
) -> SimilarityResult:
    """The ``top_k`` indexed images most similar to each query image, by cosine similarity of their codes.

    Parameters
    ----------
    index : str, Path or sequence
        A codes file written by ``extract`` (paths and codes), or a folder, CSV or image
        files and folders (codes from the cache, computed on first use).
    queries : str, Path or sequence
        Images, folders, a CSV, or a codes file; their codes must come from the index's
        feature set (for a codes-file index they are made with its options).
    top_k : int, default=5
        Neighbours per query.
    power : bool, default=False
        Signed square root of the codes before L2 normalization (power normalization).
    whiten : int or None, default=None
        PCA-whiten to this many components, fitted on the index; None: no PCA.
    method : {"exact", "faiss"}, default="exact"
        Exact search, or faiss' approximate HNSW index (extra ``faiss``).
    features : mapping or None, default=None
        Extraction options that make the codes (``model``, ``layer``, ...); None: the
        codes file's, or extract's defaults.
    run : keyword arguments
        Run options of :func:`cnncodes.extract` (``cache``, ``device``, ``progress``, ...); bad images are skipped.

    Returns
    -------
    SimilarityResult

    Raises
    ------
    InputError
        If the queries' codes come from another feature set than the index's, or an
        input is missing.

    Examples
    --------
    >>> images = [np.full((32, 32, 3), v, np.uint8) for v in (0, 120, 250)]
    >>> result = similar(images, [np.full((32, 32, 3), 245, np.uint8)], top_k=2, cache=False, progress=False)
    >>> result.n_indexed, result.results[0][1][0][0]
    (3, '<image 2>')
    """
    searcher = CodeIndex(n_neighbors=top_k, normalize="power" if power else "l2", whiten=whiten, method=method)
    searcher.check_params()  # before any extraction
    reference = load_codes(index, features=features, **run)
    if _single_codes_file(index) is not None:  # the queries' codes are made as the file's were
        features = {**options_of_codes_spec(reference.spec), **(features or {})}
    if _single_codes_file(queries) is None:
        wanted = LoadedCodes(reference.codes[:0], [], feature_spec(features or {}), _source_name(queries))
        check_same_features(reference, wanted)  # refuse a mismatch before extracting anything
        asked = load_codes(queries, features=features, **run)
    else:
        asked = load_codes(queries, **run)
    check_same_features(reference, asked)
    failures = reference.failures + asked.failures
    if not len(reference.codes) or not len(asked.codes):
        return SimilarityResult([(path, []) for path in asked.paths], len(reference.codes), failures)
    searcher.fit(reference.codes)
    scores, rows = searcher.kneighbors(asked.codes)
    results = [
        (query, [(reference.paths[r], float(s)) for r, s in zip(row_ids, row_scores)])
        for query, row_ids, row_scores in zip(asked.paths, rows, scores)
    ]
    return SimilarityResult(results, len(reference.codes), failures)
