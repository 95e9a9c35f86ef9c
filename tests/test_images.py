"""Tests of decoding, colour conversion, orientation and views on real files."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from cnncodes.errors import ImageDecodeError, InputError
from cnncodes.images import MAX_PIXELS, Preprocessing, decode_image, make_views, n_views
from cnncodes.params import VIEWS
from tests.badfiles import make_bad_files, png_header_only

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


def test_decode_image_pixels_as_pillow_without_copies(tmp_path: Path) -> None:
    """Check that decoded files equal Pillow's own upright RGB (EXIF turn, grey and colour) and stay usable."""
    rng = np.random.default_rng(3)
    exif = Image.Exif()
    exif[0x0112] = 8  # orientation: rotate 90 CCW to display
    cases = {
        "upright.jpg": (Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)), None),
        "turned.jpg": (Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)), exif),
        "grey.png": (Image.fromarray(rng.integers(0, 255, (30, 50), dtype=np.uint8)), None),
    }
    for name, (image, orientation) in cases.items():
        path = tmp_path / name
        image.save(path, **({"exif": orientation} if orientation else {}))
        with Image.open(path) as reference:
            expected = np.asarray(ImageOps.exif_transpose(reference).convert("RGB"))
        decoded = decode_image(path, PRE)
        np.testing.assert_array_equal(np.asarray(decoded), expected, err_msg=name)
        assert decoded.mode == "RGB" and make_views(decoded, PRE)[0].shape == (64, 64, 3)


def test_decode_image_leaves_the_callers_image_alone() -> None:
    """Check that a PIL image with an EXIF turn given by the caller comes out upright and is itself unchanged."""
    image = Image.fromarray(np.arange(30 * 50 * 3, dtype=np.uint8).reshape(30, 50, 3))
    image.getexif()[0x0112] = 6
    before = np.asarray(image).copy()
    assert decode_image(image, PRE).size == (30, 50)
    assert image.size == (50, 30) and image.getexif()[0x0112] == 6
    np.testing.assert_array_equal(np.asarray(image), before)


def test_decode_image_draft_reduces_large_jpegs(tmp_path: Path) -> None:
    """Check that a JPEG far larger than needed decodes at a reduced DCT scale, and one not that large in full."""
    path = tmp_path / "large.jpg"
    Image.fromarray(np.full((2000, 3000, 3), 90, np.uint8)).save(path)
    assert decode_image(path, PRE).size == (375, 250)  # 1/8 scale: still above 64 / 0.875 on the short side
    assert decode_image(path, Preprocessing(1000, 0.875, "bicubic")).size == (3000, 2000)  # 1/2 would be too small


def test_decode_image_bytes_equal_the_file(bad_files: dict[str, Path]) -> None:
    """Check that the encoded bytes of a file decode to the same pixels as the file, named as given."""
    from_file = np.asarray(decode_image(bad_files["good"], PRE))
    from_bytes = np.asarray(decode_image(bad_files["good"].read_bytes(), PRE, name="<bytes 0>"))
    np.testing.assert_array_equal(from_bytes, from_file)
    truncated = bad_files["truncated"].read_bytes()
    with pytest.raises(ImageDecodeError, match="^" + re.escape("<bytes 1>: cannot decode image (image file is trunc")):
        decode_image(truncated, PRE, name="<bytes 1>")


def test_decode_image_refuses_bombs_between_one_and_two_limits(tmp_path: Path) -> None:
    """Check that a header just over the limit (where Pillow only warns) is refused, and no warning filter stays."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(10_000, 10_000))
    filters = list(warnings.filters)
    expected = f"{path}: image too large to decode safely (100000000 pixels > {MAX_PIXELS})"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageDecodeError, match="^" + re.escape(expected) + "$"):
            decode_image(path, PRE)
    assert caught == [] and warnings.filters == filters  # Pillow's warning became the refusal, nothing leaked


def test_decode_image_refuses_bombs_when_pillow_limit_lifted(
    bad_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check that a user who lifts Pillow's limit still gets the refusal: the guard is per decode."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    expected = f"{bad_files['bomb']}: image too large to decode safely (10000000000 pixels > {MAX_PIXELS})"
    with pytest.raises(ImageDecodeError, match="^" + re.escape(expected) + "$"):
        decode_image(bad_files["bomb"], PRE)


def test_images_import_leaves_pillow_settings_alone() -> None:
    """Check that importing cnncodes.images changes no Pillow global (bomb limit, truncated-image rule)."""
    code = (
        "from PIL import Image, ImageFile\n"
        "Image.MAX_IMAGE_PIXELS = 123; ImageFile.LOAD_TRUNCATED_IMAGES = True\n"
        "import cnncodes.images\n"
        "print(Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout == "123 True\n"


def test_n_views_unknown_protocol() -> None:
    """Check that an unknown view protocol is refused with the declared choices."""
    expected = (
        "The 'views' parameter must be one of 'none', 'flip', '5crop', '10crop', 'razavian16'. Got 'crop' instead."
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        n_views("crop")


@pytest.mark.parametrize("views", VIEWS)
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


def _jpeg(pixels: np.ndarray, **options: object) -> bytes:
    import io

    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, "JPEG", **options)
    return encoded.getvalue()


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_decode_image_refuses_jpegs_cut_and_closed_by_an_end_marker(progressive: bool) -> None:
    """Check that a JPEG whose coded data is cut and then closed by EOI (libjpeg would fill the rest with grey) is
    refused with the decoder's reason, wherever the cut is, and that Pillow's LOAD_TRUNCATED_IMAGES stays off."""
    from PIL import ImageFile

    rng = np.random.default_rng(3)
    pixels = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8)).resize((320, 240)))
    data = _jpeg(pixels, quality=90, progressive=progressive)
    pre = Preprocessing(32, 1.0, "bilinear")  # decoded at 1/4 scale (draft): the check holds there too
    assert decode_image(data, pre).size == (80, 60)
    header = data.index(b"\xff\xda")
    for cut in np.linspace(header + 200, len(data) - 200, 7).astype(int):
        with pytest.raises(ImageDecodeError, match=r"^<cut>: cannot decode image \(.*(premature end|truncated)"):
            decode_image(data[:cut] + b"\xff\xd9", pre, name="<cut>")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_decode_image_keeps_genuine_flat_bottoms() -> None:
    """Check that a complete JPEG whose bottom is one flat colour (an X-ray's black border) is not taken as cut."""
    pixels = np.zeros((240, 320, 3), np.uint8)
    pixels[:120] = np.random.default_rng(4).integers(0, 256, (120, 320, 3), np.uint8)
    decoded = decode_image(_jpeg(pixels), Preprocessing(224, 1.0, "bilinear"))
    assert decoded.size == (320, 240) and np.asarray(decoded)[-1].max() <= 2


def test_decode_image_refuses_a_jpeg_claiming_more_pixels_than_its_bytes_hold() -> None:
    """Check that a JPEG header claiming 8000 x 8000 pixels over a few KB is refused before decoding."""
    from tests.badfiles import jpeg_claiming

    data = jpeg_claiming(_jpeg(np.full((64, 64, 3), 90, np.uint8)), 8000, 8000)
    message = f"<claim>: cannot decode image (header claims 8000 x 8000 pixels, the file has {len(data)} bytes)"
    with pytest.raises(ImageDecodeError, match="^" + re.escape(message) + "$"):
        decode_image(data, Preprocessing(32, 1.0, "bilinear"), name="<claim>")


def test_decode_image_refuses_fifos_and_folders_without_blocking(tmp_path: Path) -> None:
    """Check that a FIFO given as an image is refused from its stat (opening it to read would wait for a writer)."""
    import os

    os.mkfifo(tmp_path / "pipe.jpg")
    pre = Preprocessing(32, 1.0, "bilinear")
    with pytest.raises(
        ImageDecodeError, match="^" + re.escape(f"{tmp_path / 'pipe.jpg'}: not a regular file (a FIFO)")
    ):
        decode_image(tmp_path / "pipe.jpg", pre)
    with pytest.raises(ImageDecodeError, match="^" + re.escape(f"{tmp_path}: not a regular file (a folder)")):
        decode_image(tmp_path, pre)
