"""Tests of input normalization: every accepted form gives the same named sources; other forms are refused."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cnncodes.datasets import load_dataset
from cnncodes.errors import InputError
from cnncodes.inputs import Inputs, read_inputs

FILES = ["photos/a.jpg", "photos/b.png", "photos/a.jpg"]  # a duplicate stays a row of its own


@pytest.mark.parametrize(
    "make",
    [
        lambda: list(FILES),
        lambda: tuple(Path(f) for f in FILES),
        lambda: (f for f in FILES),
        lambda: pd.Series(FILES, name="path"),
        lambda: pd.DataFrame({"path": FILES}),
        lambda: pd.DataFrame({"path": FILES, "label": [0, 1, 0]})[["path"]],
        lambda: np.array(FILES, dtype=object).reshape(-1, 1),
        lambda: np.array(FILES, dtype=object),
        lambda: np.array(FILES),
    ],
    ids=[
        "list",
        "tuple-of-paths",
        "generator",
        "series",
        "one-column-dataframe",
        "column-selected-by-name",
        "n-by-1-object-array",
        "1d-object-array",
        "1d-unicode-array",
    ],
)
def test_read_inputs_path_forms_give_the_same_files(make) -> None:
    """Check that every form of a list of paths gives the paths as given, in order, as files (no existence check)."""
    inputs = read_inputs(make())
    assert inputs.names == FILES
    assert inputs.sources == [Path(f) for f in FILES]
    assert all(type(name) is str for name in inputs.names)  # numpy strings become plain names
    assert inputs.labels is None and inputs.class_names is None


def test_read_inputs_single_image_file_is_one_item(image_dir: Path) -> None:
    """Check that the path of one image file (str or Path) is one item, not a folder or a list of characters."""
    path = image_dir / "cats" / "cats_1.jpg"
    for given in (str(path), path):
        inputs = read_inputs(given)
        assert inputs.names == [str(path)] and inputs.sources == [path]


def test_read_inputs_folder_and_dataset_carry_labels(image_dir: Path) -> None:
    """Check that a class-per-folder tree and its Dataset give the same sorted files with labels and classes."""
    from_folder, from_dataset = read_inputs(image_dir), read_inputs(load_dataset(image_dir))
    for inputs in (from_folder, from_dataset):
        assert [Path(n).relative_to(image_dir).as_posix() for n in inputs.names][:2] == [
            "cats/cats_0.jpg",
            "cats/cats_1.jpg",
        ]
        assert inputs.labels.tolist() == [0, 0, 0, 1, 1, 1] and inputs.class_names == ["cats", "dogs"]


def test_read_inputs_list_with_a_folder_expands_it(image_dir: Path) -> None:
    """Check that a list mixing a file and a folder gives the file and the folder's images, unlabelled."""
    extra = image_dir / "dogs" / "dogs_0.jpg"
    inputs = read_inputs([extra, image_dir / "cats"])
    assert inputs.names == [str(extra)] + [str(image_dir / "cats" / f"cats_{i}.jpg") for i in range(3)]
    assert inputs.labels is None


def test_read_inputs_bytes_are_named_by_position() -> None:
    """Check that encoded files as bytes (a list, an object column, or one object) keep their bytes as sources."""
    blobs = [b"\x89PNG first", b"\xff\xd8 second"]
    for given in (blobs, pd.Series(blobs), np.array(blobs, dtype=object).reshape(-1, 1)):
        inputs = read_inputs(given)
        assert inputs.names == ["<bytes 0>", "<bytes 1>"] and inputs.sources == blobs
    assert read_inputs(blobs[0]).sources == [blobs[0]]


def test_read_inputs_pixels() -> None:
    """Check that a 4-D uint8 array gives one image per row, and lists of arrays or PIL images keep them."""
    pixels = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    stacked = read_inputs(pixels)
    assert stacked.names == ["<array 0>", "<array 1>"]
    np.testing.assert_array_equal(stacked.sources[1], pixels[1])
    images = [Image.fromarray(pixels[0]), pixels[1]]
    listed = read_inputs(images)
    assert listed.names == ["<image 0>", "<image 1>"] and listed.sources[0] is images[0]


def test_read_inputs_passes_inputs_through() -> None:
    """Check that already normalized inputs come back as they are (a plan can be rebuilt from them)."""
    inputs = Inputs(["x"], [Path("x")])
    assert read_inputs(inputs) is inputs and len(inputs) == 1


@pytest.mark.parametrize(
    "given,message",
    [
        (
            pd.DataFrame({"path": ["a.jpg"], "label": [1]}),
            "inputs: expected one column of images, got a DataFrame with columns 'path', 'label'",
        ),
        (
            np.array([["a.jpg", "x"]], dtype=object),
            "<array>: expected N x H x W x 3 uint8 images, got shape (1, 2) and dtype object",
        ),
        (
            np.array([b"\x89PNG\x00"]),
            "<array>: expected N x H x W x 3 uint8 images, got shape (1,) and dtype |S5",
        ),
        (
            np.zeros((2, 8, 8, 3), np.float32),
            "<array>: expected N x H x W x 3 uint8 images, got shape (2, 8, 8, 3) and dtype float32",
        ),
        (
            ["a.jpg", np.zeros((2, 2, 3), np.uint8)],
            "inputs: expected paths, a folder, a CSV, image bytes, uint8 arrays or PIL images; got ndarray, str",
        ),
        (42, "inputs: expected paths, a folder, a CSV, image bytes, uint8 arrays or PIL images; got int"),
    ],
    ids=["two-column-dataframe", "two-column-array", "byte-string-array", "float-pixels", "mixed-list", "number"],
)
def test_read_inputs_refuses_other_forms(given, message: str) -> None:
    """Check that forms outside the accepted ones are one-line errors saying what was expected and got."""
    with pytest.raises(InputError, match="^" + re.escape(message) + "$"):
        read_inputs(given)


def test_read_inputs_missing_folder(tmp_path: Path) -> None:
    """Check that a missing single path is refused before any work, naming it."""
    with pytest.raises(InputError, match="^" + re.escape(f"{tmp_path / 'nope'}: no such file or folder") + "$"):
        read_inputs(tmp_path / "nope")
