"""Tests of classify: the backbone's own ImageNet labels of real photos, probabilities, failures, refusals."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cnncodes import classify
from cnncodes.errors import UnknownLayerError
from cnncodes.labels import softmax
from tests.conftest import HYMENOPTERA

ANT = HYMENOPTERA / "val" / "ants" / "1124525276_816a07c17f.jpg"
BEE = HYMENOPTERA / "val" / "bees" / "10870992_eebeeb3a12.jpg"


def test_classify_names_what_real_photos_show(default_backbone: Path, cache_path: Path) -> None:
    """Check that an ant photo's top ImageNet class is 'ant' and a bee photo's is 'bee', with probabilities."""
    result = classify([ANT, BEE], top_k=3, cache=cache_path, progress=False)
    assert [p.path for p in result.predictions] == [str(ANT), str(BEE)]
    assert [p.top[0][0] for p in result.predictions] == ["ant", "bee"]
    assert result.score_kind == "probability" and result.failures == []
    for prediction in result.predictions:
        scores = [score for _, score in prediction.top]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    assert result.predictions[0].top[0][1] > 0.5


def test_classify_reads_logits_from_the_cache(default_backbone: Path, cache_path: Path) -> None:
    """Check that a second run gives the same probabilities (the logits tap is cached like any tap)."""
    first = classify([ANT], cache=cache_path, progress=False)
    second = classify([ANT], cache=cache_path, progress=False)
    assert second.predictions == first.predictions
    assert len(first.predictions[0].top) == 5  # the default top_k


def test_classify_lists_a_bad_image_and_goes_on(default_backbone: Path, tmp_path: Path) -> None:
    """Check that an undecodable file is a failure naming it, and the other images are still classified."""
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    result = classify([bad, BEE], top_k=1, cache=False, progress=False)
    assert [p.top[0][0] for p in result.predictions] == ["bee"]
    assert [path for path, _ in result.failures] == [str(bad)]


def test_classify_refuses_a_model_without_logits(tiny_onnx: Path) -> None:
    """Check that a model without a 'logits' tap is refused in one line naming it and its taps."""
    expected = (
        f"{tiny_onnx}: no 'logits' tap, so no ImageNet classes; its taps are conv1, relu1, conv2, gap, vector. "
        "Run 'cnncodes models' for models with one"
    )
    with pytest.raises(UnknownLayerError, match=re.escape(expected)):
        classify([BEE], model=str(tiny_onnx), cache=False)


def test_softmax_rows_sum_to_one_without_overflow() -> None:
    """Check that softmax is stable for huge logits and keeps the order of the scores."""
    logits = np.array([[1000.0, 999.0, -1000.0], [0.0, 0.0, 0.0]])
    probabilities = softmax(logits)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1)
    assert np.isfinite(probabilities).all() and probabilities[0].argmax() == 0
    np.testing.assert_allclose(probabilities[1], 1 / 3)
