"""Tests of decoding, colour conversion, orientation and views on real files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncodes.errors import ImageDecodeError
from cnncodes.images import MAX_PIXELS, Preprocessing, decode_image, make_views, n_views
from tests.badfiles import make_bad_files

PRE = Preprocessing(input_size=64, crop_fraction=0.875, interpolation="bicubic")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize(
    "name,reason",
    [
        ("truncated", "cannot decode image (image file is truncated"),
        ("empty", "empty file (0 bytes)"),
        ("garbage", "not an image (unknown format)"),
        ("bomb", f"image too large to decode safely (10000000000 pixels > {MAX_PIXELS})"),
    ],
    ids=["truncated", "zero-byte", "garbage", "bomb-header"],
)
def test_decode_image_bad_file_one_line_error(bad_files: dict[str, Path], name: str, reason: str) -> None:
    """Check that each bad file gets one line naming the file and the reason."""
    with pytest.raises(ImageDecodeError, match="^" + re.escape(f"{bad_files[name]}: {reason}")) as caught:
        decode_image(bad_files[name], PRE)
    assert "\n" not in str(caught.value)


def test_decode_image_missing_file(tmp_path: Path) -> None:
    """Check that a missing file is named."""
    path = tmp_path / "missing.jpg"
    with pytest.raises(ImageDecodeError, match=re.escape(f"{path}: cannot read file (No such file or directory)")):
        decode_image(path, PRE)


@pytest.mark.parametrize("name", ["cmyk", "gray16", "rgba", "palette", "webp", "bmp", "tiff"])
def test_decode_image_odd_modes_become_rgb(bad_files: dict[str, Path], name: str) -> None:
    """Check that odd modes and other formats decode to RGB of the right size."""
    image = decode_image(bad_files[name], PRE)
    assert image.mode == "RGB" and image.size == (120, 90)


def test_decode_image_conversion_rules(bad_files: dict[str, Path]) -> None:
    """Check the documented rules: alpha over white, 16-bit keeps the top byte."""
    assert np.all(np.asarray(decode_image(bad_files["rgba"], PRE)) == 255)
    gray = np.asarray(decode_image(bad_files["gray16"], PRE))
    raw = np.asarray(Image.open(bad_files["gray16"]), dtype=np.float64)
    np.testing.assert_array_equal(gray[..., 0], (raw / 257).astype(np.uint8))
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_decode_image_applies_exif_orientation(tmp_path: Path) -> None:
    """Check that an EXIF 'rotate 90' image comes out upright (portrait)."""
    image = Image.fromarray(np.zeros((40, 80, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert decode_image(path, PRE).size == (40, 80)


def test_decode_image_draft_reduces_large_jpegs(tmp_path: Path) -> None:
    """Check that a JPEG far larger than needed is decoded at a reduced DCT scale, but never below the crop."""
    path = tmp_path / "large.jpg"
    Image.fromarray(np.full((2000, 3000, 3), 90, np.uint8)).save(path)
    drafted = decode_image(path, PRE)
    assert min(drafted.size) >= 64 / 0.875 and drafted.size[0] < 3000
    full = decode_image(path, Preprocessing(64, 0.875, "bicubic", draft=False))
    assert full.size == (3000, 2000)


@pytest.mark.parametrize("views", ["none", "flip", "5crop", "10crop", "razavian16"])
def test_make_views_count_and_shape(views: str) -> None:
    """Check that each view protocol gives its documented number of uint8 (size, size, 3) arrays."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    pre = Preprocessing(64, 0.875, "bilinear", views=views)
    out = make_views(image, pre)
    assert len(out) == n_views(views)
    assert all(v.shape == (64, 64, 3) and v.dtype == np.uint8 for v in out)
    if views in ("flip", "10crop", "razavian16"):
        half = len(out) // 2
        np.testing.assert_array_equal(out[half], out[0][:, ::-1])


def test_decode_image_rejects_bad_arrays() -> None:
    """Check that an array of the wrong shape or dtype is named in the error."""
    with pytest.raises(
        ImageDecodeError,
        match=re.escape("<image 3>: expected an H x W x 3 uint8 array, got shape (4, 4, 3) and dtype float64"),
    ):
        decode_image(np.zeros((4, 4, 3)), PRE, name="<image 3>")
