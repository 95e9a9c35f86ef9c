"""Tests of similar: codes from codes files or the cache, one feature set for index and queries, neighbours."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cnncodes import extract, similar
from cnncodes.errors import InputError
from cnncodes.similarity import load_codes
from tests.conftest import HYMENOPTERA

VAL = HYMENOPTERA / "val"


@pytest.fixture(scope="module")
def val_codes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """hymenoptera val's default codes in a codes file, and the cache that holds them."""
    folder = tmp_path_factory.mktemp("similar")
    cache = folder / "cache"
    extract(VAL, cache=cache, output=folder / "val.h5", progress=False)
    return folder / "val.h5", cache


def test_similar_finds_an_indexed_image_first(val_codes: tuple[Path, Path]) -> None:
    """Check that a query that is in the index is its own nearest (cosine 1), then same-class photos, best first."""
    codes_file, cache = val_codes
    query = sorted((VAL / "ants").glob("*.jpg"))[4]
    result = similar(codes_file, [query], top_k=5, cache=cache, progress=False)
    assert result.n_indexed == 153 and result.failures == []
    ((asked, neighbors),) = result.results
    assert asked == str(query)
    assert neighbors[0][0].endswith(query.name) and neighbors[0][1] == pytest.approx(1, abs=1e-5)
    scores = [score for _, score in neighbors]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert sum("/ants/" in path for path, _ in neighbors) >= 4


def test_similar_folder_index_equals_codes_file_index(val_codes: tuple[Path, Path]) -> None:
    """Check that a folder index (codes from the cache) gives the same neighbours as its codes file."""
    codes_file, cache = val_codes
    queries = sorted((VAL / "bees").glob("*.jpg"))[:3]
    from_file = similar(codes_file, queries, top_k=3, cache=cache, progress=False)
    from_folder = similar(VAL, queries, top_k=3, cache=cache, progress=False)
    assert [[p for p, _ in n] for _, n in from_file.results] == [[p for p, _ in n] for _, n in from_folder.results]


def test_similar_exact_and_faiss_agree_on_real_codes(val_codes: tuple[Path, Path]) -> None:
    """Check that faiss' approximate search returns the exact top 5 on hymenoptera val."""
    codes_file, cache = val_codes
    exact = similar(codes_file, codes_file, top_k=5, cache=cache)
    approximate = similar(codes_file, codes_file, top_k=5, method="faiss", cache=cache)
    recall = np.mean(
        [len({p for p, _ in a} & {p for p, _ in b}) / 5 for (_, a), (_, b) in zip(exact.results, approximate.results)]
    )
    assert recall >= 0.98


def test_similar_refuses_queries_of_another_feature_set(val_codes: tuple[Path, Path], tmp_path: Path) -> None:
    """Check that a codes file of another layer as queries is refused in one line naming both files."""
    codes_file, cache = val_codes
    other = tmp_path / "stage4.h5"
    extract(sorted((VAL / "ants").glob("*.jpg"))[:2], layer="stage4", cache=cache, output=other, progress=False)
    expected = (
        f"{other}: codes of efficientnet_lite0 stage4, but {codes_file} holds efficientnet_lite0 penultimate "
        "(tap differs); make both with the same model and options"
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        similar(codes_file, other, cache=cache)


def test_similar_refuses_options_that_contradict_the_index(val_codes: tuple[Path, Path]) -> None:
    """Check that code options other than the codes file's are refused before any query is extracted."""
    codes_file, cache = val_codes
    expected = (
        f"the options given: codes of efficientnet_lite0 penultimate, but {codes_file} holds efficientnet_lite0 "
        "penultimate (normalize differs); make both with the same model and options"
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        similar(codes_file, [VAL / "ants"], features={"normalize": "l2"}, cache=cache)


def test_similar_lists_failed_queries_and_json_shape(val_codes: tuple[Path, Path], tmp_path: Path) -> None:
    """Check that a bad query image is a failure and the JSON form is results -> query, neighbors -> path, score."""
    codes_file, cache = val_codes
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    good = sorted((VAL / "bees").glob("*.jpg"))[0]
    result = similar(codes_file, [bad, good], top_k=1, cache=cache, progress=False)
    assert [path for path, _ in result.failures] == [str(bad)]
    data = result.as_dict()
    assert list(data) == ["results"] and [r["query"] for r in data["results"]] == [str(good)]
    assert list(data["results"][0]["neighbors"][0]) == ["path", "score"]


def test_load_codes_of_a_codes_file_keeps_paths_and_keys(val_codes: tuple[Path, Path]) -> None:
    """Check that load_codes reads a codes file's codes, paths, keys and spec without extracting."""
    codes_file, _ = val_codes
    loaded = load_codes(codes_file, cache=False)
    assert loaded.codes.shape == (153, 1280) and len(loaded.keys) == 153 and loaded.source == str(codes_file)
    assert loaded.paths[0].endswith(".jpg") and loaded.spec["layers"][0]["tap"] == "penultimate"
