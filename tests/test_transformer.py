"""Tests of CNNCodes: parameters from params, validation in fit, input forms, failures, pickling."""

from __future__ import annotations

import inspect
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnncodes import params
from cnncodes.errors import ImageDecodeError, InputError, UnknownLayerError
from cnncodes.transformer import CNNCodes
from tests.badfiles import make_bad_files
from tests.conftest import HYMENOPTERA
from tests.conftest import session_cache

pytestmark = pytest.mark.usefixtures("default_backbone")


@pytest.fixture(scope="module")
def paths() -> list[str]:
    """Four real photos, two ants and two bees."""
    found = [sorted((HYMENOPTERA / "val" / name).glob("*.jpg"))[:2] for name in ("ants", "bees")]
    return [str(p) for group in found for p in group]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> CNNCodes:
    return CNNCodes(cache=str(session_cache(tmp_path_factory))).fit()


@pytest.fixture(scope="module")
def expected(fitted: CNNCodes, paths: list[str]) -> np.ndarray:
    """The codes of ``paths`` given as a plain list of strings (read-only)."""
    codes = fitted.transform(paths)
    codes.flags.writeable = False
    return codes


def test_cnncodes_init_takes_every_declared_parameter() -> None:
    """Check that __init__ takes exactly the declared parameters, keyword-only, with the declared defaults."""
    signature = inspect.signature(CNNCodes)
    assert list(signature.parameters) == list(params.PARAMETERS)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.parameters.values())
    defaults = {name: p.default for name, p in signature.parameters.items()}
    assert defaults == {**{name: params.default(name) for name in params.PARAMETERS}, "on_error": "raise"}
    assert params.ESTIMATOR_ON_ERROR == "raise"


def test_cnncodes_docstring_states_the_declared_defaults() -> None:
    """Check that the docstring documents every parameter with the default the signature has."""
    documented = dict(re.findall(r"^    (\w+) : .*, default=(.+)$", CNNCodes.__doc__ or "", flags=re.M))
    signature = inspect.signature(CNNCodes)
    assert set(documented) == set(signature.parameters)
    for name, text in documented.items():
        assert text == repr(signature.parameters[name].default).replace("'", '"'), name


def test_cnncodes_init_stores_values_untouched() -> None:
    """Check that __init__ keeps every value as given (a list stays a list, 'auto' stays 'auto') and loads nothing."""
    layer = ["stage4", "penultimate"]
    estimator = CNNCodes(layer=layer, device="auto", gem_p=2, on_error="bogus", cache=False)
    assert estimator.layer is layer and estimator.device == "auto" and estimator.gem_p == 2
    assert estimator.on_error == "bogus"  # validated in fit, not here
    assert not hasattr(estimator, "_extractor") and not hasattr(estimator, "backbone_")


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("pooling", "mean", "must be one of 'avg', 'max', 'gem'. Got 'mean' instead."),
        ("on_error", "drop", "must be one of 'skip', 'raise'. Got 'drop' instead."),
        ("gem_p", 0, "must be a positive number. Got 0 instead."),
        ("batch_size", 0, "must be a positive int or None. Got 0 instead."),
        ("device", "gpu", "must be one of 'auto', 'cpu', 'cuda', 'tensorrt'. Got 'gpu' instead."),
        ("layer", [], "must be a layer name, a non-empty sequence of layer names, or None. Got [] instead."),
    ],
)
def test_cnncodes_fit_validates_in_sklearn_words(name: str, value: object, expected: str) -> None:
    """Check that fit refuses a bad value with scikit-learn's message naming CNNCodes, as a ValueError."""
    with pytest.raises(InputError, match=re.escape(f"The '{name}' parameter of CNNCodes {expected}")) as caught:
        CNNCodes(cache=False, **{name: value}).fit()
    assert isinstance(caught.value, ValueError)


def test_cnncodes_fit_unknown_layer_is_named() -> None:
    """Check that a layer the backbone does not have is refused at fit, naming it."""
    expected = (
        "Unknown layer 'stage9' for backbone 'efficientnet_lite0'. Did you mean 'stage7'? Known layers: penultimate, "
        "stage1, stage2, stage3, stage4, stage5, stage6, stage7, head, logits."
    )
    with pytest.raises(UnknownLayerError, match=re.escape(expected)):
        CNNCodes(layer="stage9", cache=False).fit()


def test_cnncodes_fit_resolves_the_default_tap_and_widths() -> None:
    """Check that layer=None resolves to the backbone's default tap, and several taps concatenate their widths."""
    default = CNNCodes(cache=False).fit()
    assert default.layer is None and default.layers_ == ("penultimate",) and default.n_features_out_ == 1280
    assert default.backbone_.name == "efficientnet_lite0"
    both = CNNCodes(layer=("stage4", "penultimate"), cache=False).fit()
    assert both.layers_ == ("stage4", "penultimate") and both.n_features_out_ == 80 + 1280
    names = both.get_feature_names_out()
    assert names[0] == "efficientnet_lite0_stage4_0" and names[80] == "efficientnet_lite0_penultimate_0"
    assert len(names) == both.n_features_out_


def test_cnncodes_transform_float32_rows(fitted: CNNCodes, expected: np.ndarray, paths: list[str]) -> None:
    """Check that transform gives one float32 row of n_features_out_ per image, not all zero, none dropped."""
    assert expected.shape == (4, 1280) and expected.dtype == np.float32
    assert np.abs(expected).sum(axis=1).min() > 0 and fitted.dropped_indices_.tolist() == []
    assert not np.allclose(expected[0], expected[1])


@pytest.mark.parametrize(
    "form",
    ["paths", "series", "frame", "object_column", "bytes", "pil"],
)
def test_cnncodes_transform_every_input_form(
    form: str, fitted: CNNCodes, expected: np.ndarray, paths: list[str]
) -> None:
    """Check that a Series, a one-column DataFrame, an (n, 1) array, bytes and PIL images give the list's codes."""
    inputs = {
        "paths": lambda: [Path(p) for p in paths],
        "series": lambda: pd.Series(paths, name="path"),
        "frame": lambda: pd.DataFrame({"path": paths}),
        "object_column": lambda: np.array(paths, dtype=object).reshape(-1, 1),
        "bytes": lambda: [Path(p).read_bytes() for p in paths],
        "pil": lambda: [Image.open(p) for p in paths],
    }[form]()
    np.testing.assert_allclose(fitted.transform(inputs), expected, rtol=1e-5, atol=1e-6)


def test_cnncodes_fit_transform_dataframe_column(
    tmp_path_factory: pytest.TempPathFactory, expected: np.ndarray, paths: list[str]
) -> None:
    """Check that fit_transform(df[["path"]]) reads the column's files, not a file called "path"."""
    frame = pd.DataFrame({"path": paths, "x": np.arange(4.0)})
    codes = CNNCodes(cache=str(session_cache(tmp_path_factory))).fit_transform(frame[["path"]])
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-6)


def test_cnncodes_on_error_raise_names_the_file(tmp_path: Path) -> None:
    """Check that the default on_error='raise' raises for a bad image, naming the file."""
    files = make_bad_files(tmp_path / "bad")
    with pytest.raises(ImageDecodeError, match=re.escape(f"{files['empty']}: empty file (0 bytes)")):
        CNNCodes(cache=False).fit().transform([str(files["good"]), str(files["empty"])])


def test_cnncodes_on_error_skip_reports_indices(tmp_path: Path) -> None:
    """Check that on_error='skip' returns rows for good images and lists the others, so y can be aligned."""
    files = make_bad_files(tmp_path / "bad")
    X_in = [str(files["good"]), str(files["empty"]), str(files["cmyk"]), str(files["garbage"])]
    y = np.array([0, 1, 0, 1])
    codes = CNNCodes(cache=False, on_error="skip").fit()
    expected = f"CNNCodes dropped 2 of 4 images ({files['empty']}: empty file (0 bytes); {files['garbage']}: "
    with pytest.warns(UserWarning, match="^" + re.escape(expected)):
        X = codes.transform(X_in)
    assert codes.dropped_indices_.tolist() == [1, 3]
    assert X.shape == (2, 1280) and np.delete(y, codes.dropped_indices_).tolist() == [0, 0]


def test_cnncodes_extract_keeps_paths_and_failures(tmp_path: Path) -> None:
    """Check that extract returns the paths of the rows and the failures with reasons."""
    files = make_bad_files(tmp_path / "bad")
    result = CNNCodes(cache=False, on_error="skip").fit().extract([str(files["good"]), str(files["empty"])])
    assert result.paths == [str(files["good"])] and result.failures == [(str(files["empty"]), "empty file (0 bytes)")]
    assert result.codes.shape == (1, 1280) and result.indices.tolist() == [0]


def test_cnncodes_pickle_drops_the_session(fitted: CNNCodes, expected: np.ndarray, paths: list[str]) -> None:
    """Check that a fitted CNNCodes pickles without its session and transforms the same after loading."""
    assert fitted._extractor is not None
    restored = pickle.loads(pickle.dumps(fitted))
    assert "_extractor" not in restored.__dict__ and fitted._extractor is not None
    np.testing.assert_array_equal(restored.transform(paths), expected)


def test_cnncodes_first_wave_pickle_loads() -> None:
    """Check that a CNNCodes pickled before gem_p existed, with on_error='drop', loads with the new names."""
    old = CNNCodes(cache=False)
    del old.gem_p
    old.on_error = "drop"
    restored = pickle.loads(pickle.dumps(old))
    assert restored.gem_p == params.default("gem_p") and restored.on_error == "skip"
    assert restored.get_params()["gem_p"] == 3.0


def test_cnncodes_pickled_before_the_fast_decoder_keeps_the_exact_one() -> None:
    """Check that a CNNCodes saved before decoder existed (its codes made by Pillow) loads with decoder='exact',
    so a model trained then predicts on the codes it was trained on; a new one defaults to 'fast'."""
    old = CNNCodes(cache=False)
    del old.decoder
    restored = pickle.loads(pickle.dumps(old))
    assert restored.decoder == "exact" and restored.get_params()["decoder"] == "exact"
    assert CNNCodes().decoder == "fast" == params.default("decoder")


def test_cnncodes_get_feature_names_out_needs_fit() -> None:
    """Check that asking an unfitted CNNCodes for names or codes raises NotFittedError naming CNNCodes."""
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match=re.escape("This CNNCodes instance is not fitted yet.")):
        CNNCodes(cache=False).get_feature_names_out()
    with pytest.raises(NotFittedError, match=re.escape("This CNNCodes instance is not fitted yet.")):
        CNNCodes(cache=False).transform(["a.jpg"])
