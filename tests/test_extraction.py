"""End-to-end tests of extract() on the real default backbone and real photos: input forms, options, failures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

import cnncodes
from cnncodes.datasets import load_dataset
from cnncodes.errors import ImageDecodeError, InputError, UnknownLayerError
from tests.badfiles import make_bad_files
from tests.conftest import HYMENOPTERA

pytestmark = pytest.mark.usefixtures("default_backbone")

PHOTOS = (
    sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:2] + sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:1]
)
NAMES = [str(p) for p in PHOTOS]


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


@pytest.fixture(scope="module")
def by_path() -> cnncodes.ExtractionResult:
    """The codes of the photos given as a list of path strings: what every other form must reproduce."""
    return cnncodes.extract(NAMES, cache=False, progress=False)


@pytest.mark.parametrize(
    "make,names",
    [
        (lambda: tuple(PHOTOS), NAMES),
        (lambda: pd.Series(NAMES), NAMES),
        (lambda: pd.DataFrame({"path": NAMES, "label": ["ant", "ant", "bee"]})[["path"]], NAMES),
        (lambda: np.array(NAMES, dtype=object).reshape(-1, 1), NAMES),
        (lambda: np.array(NAMES), NAMES),
        (lambda: load_dataset(PHOTOS), NAMES),
        (lambda: [p.read_bytes() for p in PHOTOS], ["<bytes 0>", "<bytes 1>", "<bytes 2>"]),
    ],
    ids=["tuple-of-paths", "series", "one-column-dataframe", "n-by-1-array", "1d-array", "dataset", "bytes"],
)
def test_extract_input_forms_give_the_codes_of_the_paths(make, names: list[str], by_path) -> None:
    """Check that each form of the same files gives the same codes and content keys as the list of paths."""
    result = cnncodes.extract(make(), cache=False, progress=False)
    assert result.paths == names and result.keys == by_path.keys
    np.testing.assert_array_equal(result.codes, by_path.codes)


@pytest.mark.parametrize(
    "make,names",
    [
        (lambda: [_pixels(p) for p in PHOTOS], ["<image 0>", "<image 1>", "<image 2>"]),
        (lambda: [Image.fromarray(_pixels(p)) for p in PHOTOS], ["<image 0>", "<image 1>", "<image 2>"]),
    ],
    ids=["arrays", "pil-images"],
)
def test_extract_decoded_pixels_give_the_codes_of_the_paths(make, names: list[str], by_path) -> None:
    """Check that the decoded, upright pixels of the files give the files' codes (keys are of the pixels)."""
    result = cnncodes.extract(make(), cache=False, progress=False)
    assert result.paths == names and result.keys != by_path.keys
    np.testing.assert_allclose(result.codes, by_path.codes, rtol=1e-5, atol=1e-6)


def test_extract_single_image_file(by_path) -> None:
    """Check that the path of one image file is one image, not a folder or a list."""
    result = cnncodes.extract(PHOTOS[2], cache=False, progress=False)
    assert result.paths == [NAMES[2]]
    np.testing.assert_array_equal(result.codes, by_path.codes[2:])


def test_extract_bytes_share_the_cache_of_files(cache_path: Path, by_path) -> None:
    """Check that the bytes of files already extracted are served from the cache, and bad bytes are named failures."""
    cnncodes.extract(NAMES, cache=cache_path, progress=False)
    blobs = [p.read_bytes() for p in PHOTOS]
    result = cnncodes.extract([blobs[0], blobs[1][:1000], blobs[2], b""], cache=cache_path, progress=False)
    assert result.n_from_cache == 2 and result.paths == ["<bytes 0>", "<bytes 2>"]
    assert result.failures[1] == ("<bytes 3>", "empty file (0 bytes)")
    assert result.failures[0][0] == "<bytes 1>" and result.failures[0][1].startswith("cannot decode image (")
    np.testing.assert_array_equal(result.codes, by_path.codes[[0, 2]])


def test_extract_dataframe_of_two_columns_is_refused() -> None:
    """Check that a DataFrame with more than one column is a one-line error naming the columns."""
    frame = pd.DataFrame({"path": NAMES, "label": [0, 0, 1]})
    message = "inputs: expected one column of images, got a DataFrame with columns 'path', 'label'"
    with pytest.raises(InputError, match="^" + re.escape(message) + "$"):
        cnncodes.extract(frame, cache=False)


def test_extract_folder_labels_and_paths(image_dir: Path, cache_path: Path) -> None:
    """Check that a class-per-folder tree gives codes, labels, class names and the paths as given."""
    result = cnncodes.extract(image_dir, cache=cache_path, progress=False)
    assert result.codes.shape == (6, 1280) and result.codes.dtype == np.float32
    assert result.class_names == ["cats", "dogs"] and result.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert result.paths[0] == str(image_dir / "cats" / "cats_0.jpg")
    assert (result.codes >= 0).all() and np.abs(result.codes).sum(axis=1).min() > 0
    assert result.summary().startswith("6 images, 0 from cache, 0 failed")


def test_extract_csv_with_labels(image_dir: Path) -> None:
    """Check that a CSV of path,label rows (relative to the CSV) gives labels in its order."""
    csv_path = image_dir / "list.csv"
    csv_path.write_text("path,label\ncats/cats_0.jpg,cat\ndogs/dogs_1.jpg,dog\ncats/cats_2.jpg,cat\n")
    result = cnncodes.extract(csv_path, cache=False, progress=False)
    assert result.class_names == ["cat", "dog"] and result.labels.tolist() == [0, 1, 0]
    assert result.paths == [str(image_dir / name) for name in ("cats/cats_0.jpg", "dogs/dogs_1.jpg", "cats/cats_2.jpg")]


def test_extract_bad_files_reported_and_rows_aligned(tmp_path: Path, cache_path: Path) -> None:
    """Check that bad files become failures with reasons, good ones keep their codes, and no zero rows appear."""
    files = make_bad_files(tmp_path / "mixed")
    inputs = [str(p) for p in files.values()] + [str(tmp_path / "gone.jpg")]
    result = cnncodes.extract(inputs, cache=cache_path, progress=False)
    failed = dict(result.failures)
    assert set(failed) == {str(files[k]) for k in ("truncated", "empty", "garbage", "bomb")} | {inputs[-1]}
    assert failed[str(files["empty"])] == "empty file (0 bytes)"
    assert failed[inputs[-1]] == "cannot read file (No such file or directory)"
    assert result.paths == [p for p in inputs if p not in failed]
    assert result.indices.tolist() == [i for i, p in enumerate(inputs) if p not in failed]
    alone = cnncodes.extract([str(files["good"])], cache=False, progress=False)
    np.testing.assert_allclose(result.codes[0], alone.codes[0], rtol=1e-5, atol=1e-6)
    assert np.abs(result.codes).sum(axis=1).min() > 0


def test_extract_strict_stops_at_first_bad_file(tmp_path: Path) -> None:
    """Check that on_error='raise' raises the one-line error of the first bad file, unreadable ones included."""
    files = make_bad_files(tmp_path / "mixed")
    with pytest.raises(ImageDecodeError, match="^" + re.escape(f"{files['truncated']}: cannot decode image (")):
        cnncodes.extract([files["good"], files["truncated"]], cache=False, on_error="raise", progress=False)
    gone = tmp_path / "gone.jpg"
    with pytest.raises(ImageDecodeError, match="^" + re.escape(f"{gone}: cannot read file (No such file or")):
        cnncodes.extract([files["good"], gone], cache=False, on_error="raise", progress=False)


def test_extract_unknown_layer_fails_before_work(image_dir: Path, cache_path: Path) -> None:
    """Check that an unknown layer is an error before anything is computed or cached."""
    with pytest.raises(UnknownLayerError, match=re.escape("Unknown layer 'stage9' for backbone 'efficientnet_lite0'.")):
        cnncodes.extract(image_dir, layer="stage9", cache=cache_path)
    assert not cache_path.exists()


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("on_error", "drop", "The 'on_error' parameter must be one of 'skip', 'raise'. Got 'drop' instead."),
        ("batch_size", 0, "The 'batch_size' parameter must be a positive int or None. Got 0 instead."),
        ("views", "crop", "The 'views' parameter must be one of 'none', 'flip', '5crop', '10crop', 'razavian16'. Got "),
    ],
    ids=["on_error", "batch_size", "views"],
)
def test_extract_bad_option_fails_before_work(option: str, value: object, message: str, cache_path: Path) -> None:
    """Check that a bad option is refused in the declared wording before anything runs."""
    with pytest.raises(InputError, match="^" + re.escape(message)):
        cnncodes.extract(NAMES, cache=cache_path, **{option: value})
    assert not cache_path.exists()


def test_extract_missing_folder(tmp_path: Path) -> None:
    """Check that a missing input is one line naming it."""
    with pytest.raises(InputError, match="^" + re.escape(f"{tmp_path / 'nope'}: no such file or folder") + "$"):
        cnncodes.extract(tmp_path / "nope")


@pytest.mark.parametrize(
    "layer,pooling,grid,views,combine,n_features",
    [
        (None, "avg", None, "none", "mean", 1280),
        ("stage4", "avg", None, "none", "mean", 80),
        ("stage4", "max", 2, "none", "mean", 320),
        ("stage4", "gem", None, "flip", "mean", 80),
        ("stage6", "avg", None, "5crop", "none", 5 * 192),
        (["stage3", "penultimate"], "avg", 3, "10crop", "max", 40 * 9 + 1280),
        ("penultimate", "avg", None, "razavian16", "sum", 1280),
        ("logits", "avg", None, "none", "mean", 1000),
    ],
    ids=[
        "default-tap",
        "stage4",
        "max-grid2",
        "gem-flip",
        "5crop-none",
        "two-taps-grid-10crop",
        "razavian16",
        "logits",
    ],
)
def test_extract_options_give_documented_dimensions(layer, pooling, grid, views, combine, n_features) -> None:
    """Check that views, pooling, grid and several taps give the documented code length and feature names."""
    result = cnncodes.extract(
        PHOTOS[:2], layer=layer, pooling=pooling, grid=grid, views=views, combine=combine, cache=False, progress=False
    )
    assert result.codes.shape == (2, n_features) and len(result.feature_names) == n_features
    assert result.spec["options"]["layer"] == ([layer] if isinstance(layer, str) else layer or ["penultimate"])


def test_extract_gem_exponent_changes_the_codes() -> None:
    """Check that gem_p is a real parameter: it changes GeM codes and their feature-set spec."""
    codes = [
        cnncodes.extract(PHOTOS[:1], layer="stage4", pooling="gem", gem_p=p, cache=False, progress=False)
        for p in (2.0, 3.0)
    ]
    assert not np.allclose(codes[0].codes, codes[1].codes)
    assert [c.spec["layers"][0]["gem_p"] for c in codes] == [2.0, 3.0]


def test_extract_normalization(by_path) -> None:
    """Check that l2 and power normalization give unit rows, and power changes the direction."""
    l2 = cnncodes.extract(NAMES, normalize="l2", cache=False, progress=False).codes
    power = cnncodes.extract(NAMES, normalize="power", cache=False, progress=False).codes
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(l2, by_path.codes / np.linalg.norm(by_path.codes, axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(power, axis=1), 1, rtol=1e-5)
    assert not np.allclose(power, l2)


def test_extract_stacked_array_equals_list_of_images(cache_path: Path) -> None:
    """Check that an N x H x W x 3 array and PIL images of the same pixels share keys and codes."""
    pixels = np.stack([_pixels(p)[:300, :300] for p in PHOTOS])
    from_array = cnncodes.extract(pixels, cache=cache_path, progress=False)
    from_pil = cnncodes.extract([Image.fromarray(p) for p in pixels], cache=cache_path, progress=False)
    assert from_pil.n_from_cache == 3 and from_array.paths == ["<array 0>", "<array 1>", "<array 2>"]
    np.testing.assert_array_equal(from_array.codes, from_pil.codes)


def test_extract_float16_storage(image_dir: Path, cache_path: Path) -> None:
    """Check that float16 storage gives the same codes in memory as from the cache."""
    first = cnncodes.extract(image_dir, dtype="float16", cache=cache_path, progress=False)
    second = cnncodes.extract(image_dir, dtype="float16", cache=cache_path, progress=False)
    assert second.n_from_cache == 6
    np.testing.assert_array_equal(first.codes, second.codes)
    assert not np.array_equal(first.codes, cnncodes.extract(image_dir, cache=False, progress=False).codes)


def test_extract_writes_the_codes_file(image_dir: Path, tmp_path: Path) -> None:
    """Check that output= writes a codes file holding the result: codes, paths, labels, spec."""
    out = tmp_path / "codes.h5"
    result = cnncodes.extract(image_dir, cache=False, progress=False, output=out)
    content = cnncodes.read_codes_file(out)
    np.testing.assert_array_equal(content.codes, result.codes)
    assert content.paths == result.paths and content.labels.tolist() == result.labels.tolist()
    assert content.spec == result.spec and sorted(p.name for p in tmp_path.iterdir()) == ["codes.h5", "images"]


def test_extract_refuses_a_grid_on_a_vector_tap() -> None:
    """Check that --grid on a tap without a feature map (penultimate) is one line, not silently ignored."""
    expected = (
        "The 'grid' parameter must be None for tap 'penultimate' of efficientnet_lite0, a vector (no feature map). "
        "Got 3 instead."
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        cnncodes.extract(np.full((1, 64, 64, 3), 128, np.uint8), grid=3, cache=False, progress=False)


def test_extract_into_an_unwritable_cache_still_returns_codes(tmp_path: Path) -> None:
    """Check that a cache that cannot be written (here under /proc) warns once and the run keeps its codes and -o."""
    pixels = np.full((2, 64, 64, 3), 128, np.uint8)
    with pytest.warns(UserWarning, match="the cache is not being written") as caught:
        result = cnncodes.extract(pixels, cache="/proc/cnncodes-cache", output=tmp_path / "codes.h5", progress=False)
    assert result.codes.shape == (2, 1280) and (tmp_path / "codes.h5").is_file()
    assert sum("the cache is not being written" in str(w.message) for w in caught) == 1
    np.testing.assert_allclose(result.codes, cnncodes.extract(pixels, cache=False, progress=False).codes, rtol=1e-6)
