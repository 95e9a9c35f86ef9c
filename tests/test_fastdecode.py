"""Tests of the fast decoder against the exact one: the same files refused, the same pixels, views close."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncodes.errors import ImageDecodeError
from cnncodes.fastdecode import decode_array, make_fast_views, prepare_views
from cnncodes.images import Preprocessing, decode_image, make_views
from cnncodes.params import VIEWS
from tests.badfiles import jpeg_claiming, make_bad_files
from tests.conftest import CHEST_XRAY, HYMENOPTERA

LITE0 = Preprocessing(224, 0.875, "bicubic", decoder="fast")  # EfficientNet-Lite0's card
EXACT = Preprocessing(224, 0.875, "bicubic")


def _outcome(decode: object, source: object, name: str) -> np.ndarray | str:
    """The decoded pixels, or the one-line error (the exact decoder's Pillow image as an array)."""
    try:
        return np.asarray(decode(source, LITE0, name))  # type: ignore[operator]
    except ImageDecodeError as error:
        return str(error)


def _jpeg(pixels: np.ndarray, **options: object) -> bytes:
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, "JPEG", **options)
    return encoded.getvalue()


def _photo(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth random content (JPEG-friendly), height x width x 3."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), np.uint8))
    return np.asarray(small.resize((size[1], size[0]), Image.Resampling.BICUBIC))


def test_fast_decoder_refuses_and_decodes_every_hostile_file_as_the_exact_one(tmp_path: Path) -> None:
    """Check that on the hostile corpus (cut, empty, garbage, bomb header, CMYK, 16-bit, alpha, palette, WebP,
    BMP, TIFF) each file either fails on both with a one-line error of the same kind or decodes to the same pixels."""
    files = make_bad_files(tmp_path)
    for name, path in files.items():
        fast, exact = _outcome(decode_array, path, name), _outcome(decode_image, path, name)
        if isinstance(exact, str):  # libjpeg-turbo words a cut file its own way: the same failure, the same form
            assert isinstance(fast, str) and fast.split(" (")[0] == exact.split(" (")[0], (name, fast, exact)
        else:
            assert isinstance(fast, np.ndarray) and np.array_equal(fast, exact), name


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_decoder_turns_every_exif_orientation_as_pillow(orientation: int) -> None:
    """Check each of the 8 EXIF orientations against Pillow's exif_transpose (an asymmetric picture)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _jpeg(_photo((60, 100)), exif=exif, quality=95)
    fast = decode_array(data, LITE0)
    assert fast.flags["C_CONTIGUOUS"] and np.array_equal(fast, np.asarray(decode_image(data, EXACT)))


def test_fast_decoder_grey_progressive_and_reduced_jpegs_equal_the_exact_pixels() -> None:
    """Check a greyscale JPEG (RGB by replication), a progressive one, and large ones decoded at 1/2, 1/4 and
    1/8 of their size (the DCT scale Pillow's draft takes), pixel for pixel."""
    grey = np.asarray(Image.fromarray(_photo((90, 120))).convert("L"))
    cases = {
        "grey": _jpeg(grey),
        "progressive": _jpeg(_photo((90, 120)), progressive=True),
        "half": _jpeg(_photo((600, 800))),
        "eighth": _jpeg(_photo((2400, 3200))),
        "portrait-half": _jpeg(_photo((1400, 1000))),
    }
    sizes = {}
    for name, data in cases.items():
        fast, exact = decode_array(data, LITE0, name), np.asarray(decode_image(data, EXACT, name))
        assert np.array_equal(fast, exact), name
        sizes[name] = fast.shape
    assert sizes["grey"] == (90, 120, 3) and sizes["half"] == (300, 400, 3)
    assert sizes["eighth"] == (300, 400, 3) and sizes["portrait-half"] == (700, 500, 3)


def test_fast_decoder_refuses_cut_jpegs_and_false_headers_with_one_line() -> None:
    """Check that a real photo cut inside its data (and closed by an end marker or not), and a header claiming more
    pixels than the bytes hold, fail on the fast decoder with the exact decoder's kind of message."""
    data = (HYMENOPTERA / "train" / "ants" / "0013035.jpg").read_bytes()
    start = data.index(b"\xff\xda")
    for cut in np.linspace(start + 100, len(data) - 100, 9).astype(int):
        for tail in (b"", b"\xff\xd9"):
            with pytest.raises(
                ImageDecodeError, match=r"^<cut>: cannot decode image \(.*([Pp]remature end|Truncated File Read)"
            ):
                decode_array(data[:cut] + tail, LITE0, "<cut>")
    claim = jpeg_claiming(_jpeg(np.full((64, 64, 3), 90, np.uint8)), 8000, 8000)
    message = f"<claim>: cannot decode image (header claims 8000 x 8000 pixels, the file has {len(claim)} bytes)"
    with pytest.raises(ImageDecodeError, match="^" + re.escape(message) + "$"):
        decode_array(claim, LITE0, "<claim>")


def test_fast_decoder_passes_over_what_libjpeg_recovers_from() -> None:
    """Check that a JPEG with stray bytes before a marker (libjpeg warns, Pillow decodes) decodes as on the exact
    path, rather than failing the strict decode."""
    data = _jpeg(_photo((90, 120)))
    start = data.index(b"\xff\xda")
    length = int.from_bytes(data[start + 2 : start + 4], "big")
    end = data.rindex(b"\xff\xd9")
    flawed = data[:end] + b"\x00\x00" + data[end:]  # extraneous bytes before the end marker
    assert start + length < end
    assert np.array_equal(decode_array(flawed, LITE0), np.asarray(decode_image(flawed, EXACT)))


def test_fast_decoder_takes_arrays_and_pillow_images() -> None:
    """Check that arrays and Pillow images (no file) come back as the exact decoder gives them."""
    pixels = _photo((30, 40))
    assert np.array_equal(decode_array(pixels, LITE0), pixels)
    assert np.array_equal(
        decode_array(Image.fromarray(pixels).convert("L"), LITE0)[..., 0],
        np.asarray(Image.fromarray(pixels).convert("L")),
    )


@pytest.mark.parametrize("views", VIEWS)
def test_fast_views_count_shape_and_mirrors(views: str) -> None:
    """Check every view protocol: the count and shape of make_views, mirrors last; the crop protocols other
    than none and flip are cut by Pillow from the fast decoder's pixels."""
    pixels = _photo((150, 200))
    pre = Preprocessing(64, 0.875, "bilinear", views=views, decoder="fast")
    fast = make_fast_views(pixels, pre)
    exact = make_views(Image.fromarray(pixels), pre)
    assert [v.shape for v in fast] == [v.shape for v in exact] and all(v.dtype == np.uint8 for v in fast)
    if views == "flip":
        assert np.array_equal(fast[1], fast[0][:, ::-1])
    if views not in ("none", "flip"):
        assert all(np.array_equal(a, b) for a, b in zip(fast, exact))


def test_fast_views_grow_small_images_and_stay_close_to_pillow() -> None:
    """Check that a crop smaller than the input is enlarged (the X-rays: 196 px crops to 224) within half a grey
    level of Pillow's, and that on real photos, shrunk, the fast views stay within a few grey levels of Pillow's
    (resampled from the exact crop box: with the box rounded to whole pixels, one bee was 10.7 levels off)."""
    xray = next(iter(sorted((CHEST_XRAY / "test" / "NORMAL").glob("*.jpeg"))))
    photos = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:12]
    differences = {}
    for path in [xray] + photos:
        fast = prepare_views(path, LITE0, str(path))[0]
        exact = prepare_views(path, EXACT, str(path))[0]
        assert fast.shape == exact.shape == (224, 224, 3)
        differences[path] = np.abs(fast.astype(int) - exact).mean()
    assert differences.pop(xray) < 0.5
    assert max(differences.values()) < 6 and np.mean(list(differences.values())) < 2.5, differences


def test_fast_views_of_a_crop_over_twice_the_input_are_area_averaged_close_to_pillow(tmp_path: Path) -> None:
    """Check the other branch of the resize rule: a PNG (no DCT scaling) whose crop is 3.7x the input is area
    averaged, within a few grey levels of Pillow's filter, where sampling two pixels of every four would alias."""
    photo = Image.open(sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[0]).convert("RGB")
    large = tmp_path / "large.png"
    photo.resize((photo.width * 2, photo.height * 2), Image.Resampling.BICUBIC).save(large)
    step = min(photo.size) * 2 * 0.875 / 224
    assert step > 2
    fast = prepare_views(large, LITE0, str(large))[0]
    exact = prepare_views(large, EXACT, str(large))[0]
    assert np.abs(fast.astype(int) - exact).mean() < 3


def test_prepare_views_names_the_image_when_the_views_cannot_be_cut() -> None:
    """Check that an image without pixels (a zero-width array) is its one-line error on both decoders."""
    for pre in (LITE0, EXACT):
        with pytest.raises(ImageDecodeError, match=r"^<thin>: cannot cut the views of the image \(it has no pixels"):
            prepare_views(np.zeros((5, 0, 3), np.uint8), pre, "<thin>")


def test_fast_decoder_gives_the_same_pixels_from_many_threads() -> None:
    """Check that decode threads sharing libjpeg-turbo and OpenCV get what one thread gets."""
    paths = sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:16]
    alone = [prepare_views(p, LITE0, str(p))[0] for p in paths]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: prepare_views(p, LITE0, str(p))[0], paths * 2))
    assert all(np.array_equal(a, b) for a, b in zip(alone * 2, together))
