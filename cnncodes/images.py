"""Image decoding, orientation, colour conversion and resize/crop to uint8 model inputs; test-time views."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageDecodeError, InputError
from .messages import not_regular_message, one_of_message
from .params import VIEWS

__all__ = ["Preprocessing", "ImageSource", "MAX_PIXELS", "decode_image", "make_views", "n_views"]

MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold (about 0.25 GB of RGB): refuse, never decode
DRAFT = True  # JPEGs far larger than needed decode at a reduced DCT scale: a fixed rule, part of every spec
_RGB_RULE = "exif-transpose; alpha over white; 16-bit >> 8; CMYK/palette/L via Pillow"
# How the fast decoder cuts its views (cnncodes.fastdecode), part of fast specs: a rule changed is a new feature set.
FAST_VIEWS = ("none", "flip")  # the view protocols the fast decoder cuts itself; it leaves the others to Pillow
FAST_RESIZE_RULE = "to 1/2: exact crop box, bilinear; else rounded box: area below, bicubic or bilinear up"
_EXIF_IN_HEADER = ("JPEG", "MPO", "TIFF")  # formats whose EXIF is read without decoding (a PNG's getexif decodes)
_VIEW_COUNTS = {"none": 1, "flip": 2, "5crop": 5, "10crop": 10, "razavian16": 16}
_INTERPOLATION = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_ROTATION_DEGREES = 5.0  # the "small rotations" of the 16-view protocol
_CROP_AREA_RAZAVIAN = 4 / 9  # each Razavian crop covers 4/9 of the area: 2/3 of each side
# Pillow warns (rather than refuses) between 1x and 2x its limit; turning that warning into an error
# needs the process-wide warning filters, so decoders take turns for the instant of Image.open.
_BOMB_GUARD = threading.Lock()
# Each 8 x 8 block of a Huffman-coded JPEG takes at least one bit: more pixels than this per byte cannot be real.
_MAX_JPEG_PIXELS_PER_BYTE = 512
_JPEG_HEAD_BYTES = 1 << 18  # the frame header follows the APPn segments (EXIF is at most 64 KB)
_ARITHMETIC_FRAMES = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: a camera JPEG with extra pictures after the first

ImageSource = Union[str, Path, bytes, np.ndarray, Image.Image]


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's uint8 input; every field changes the codes.

    Parameters
    ----------
    input_size : int
        Side of the square model input.
    crop_fraction : float
        Centre crop of this fraction of the shorter side.
    interpolation : {"bicubic", "bilinear"}
        Resampling filter.
    views : str, default="none"
        One of ``params.VIEWS``.
    decoder : str, default="exact"
        One of ``params.DECODERS``: "exact" decodes and resizes with Pillow (this module),
        "fast" with libjpeg-turbo and OpenCV (:mod:`cnncodes.fastdecode`).

    Examples
    --------
    >>> pre = Preprocessing(224, 0.875, "bicubic")
    >>> pre.as_dict()["input_size"], pre.as_dict()["draft"]
    (224, True)
    """

    input_size: int  # square side sent to the model
    crop_fraction: float  # centre crop of this fraction of the shorter side
    interpolation: str  # "bicubic" or "bilinear"
    views: str = "none"  # one of params.VIEWS
    decoder: str = "exact"  # one of params.DECODERS

    def as_dict(self) -> dict[str, object]:
        """The plain form that feature-set specs hold (with the fixed decoding rules).

        Returns
        -------
        dict
            ``input_size``, ``crop_fraction``, ``interpolation``, ``draft``, ``views`` and ``rgb_rule``,
            and ``decoder`` when the decoder is not "exact" (exact specs stay those of earlier
            versions), with ``resize_rule`` where it cuts the views itself (views "none", "flip").

        Examples
        --------
        >>> sorted(Preprocessing(64, 1.0, "bilinear").as_dict())
        ['crop_fraction', 'draft', 'input_size', 'interpolation', 'rgb_rule', 'views']
        """
        return {
            "input_size": self.input_size,
            "crop_fraction": self.crop_fraction,
            "interpolation": self.interpolation,
            "draft": DRAFT,
            "views": self.views,
            "rgb_rule": _RGB_RULE,
            **({"decoder": self.decoder} if self.decoder != "exact" else {}),
            **({"resize_rule": FAST_RESIZE_RULE} if self.decoder != "exact" and self.views in FAST_VIEWS else {}),
        }


def n_views(views: str) -> int:
    """How many model inputs :func:`make_views` cuts from each image.

    Parameters
    ----------
    views : str
        One of ``params.VIEWS``.

    Returns
    -------
    int

    Raises
    ------
    InputError
        For an unknown view protocol.

    Examples
    --------
    >>> n_views("none"), n_views("10crop"), n_views("razavian16")
    (1, 10, 16)
    """
    if views not in VIEWS:
        raise InputError(one_of_message("views", VIEWS, views))
    return _VIEW_COUNTS[views]


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB by the fixed rule that ``_RGB_RULE`` names in every spec.

    - 16-bit and 32-bit integer grey (``I;16``, ``I``): the top 8 of 16 bits (x / 257);
      float (``F``): clipped to 0..255.
    - Alpha (``RGBA``, ``LA``, ``PA``, palette with transparency): composited over white.
    - ``CMYK``, ``YCbCr``, palette, ``L``, ``1``: Pillow's own conversion to RGB.
    """
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        scale = 257.0 if array.max(initial=0) <= 65535 else array.max() / 255.0
        image = Image.fromarray(np.clip(array / scale, 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == "RGB" else image.convert("RGB")


def _too_large(name: str, pixels: object) -> ImageDecodeError:
    return ImageDecodeError(f"{name}: image too large to decode safely ({pixels} pixels > {MAX_PIXELS})")


def _of_pixels(source: np.ndarray | Image.Image, name: str) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    array = source
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        message = f"{name}: expected an H x W x 3 uint8 array, got shape {array.shape} and dtype {array.dtype}"
        raise ImageDecodeError(message)
    return Image.fromarray(array[..., :3])


def _open_file(path: str | Path, name: str) -> IO[bytes]:
    """Open a regular file for reading; a FIFO, device or folder is refused without blocking on it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        message = f"{name}: cannot read file ({getattr(error, 'strerror', None) or error})"
        raise ImageDecodeError(message) from error
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ImageDecodeError(not_regular_message(name, mode, path))
    return os.fdopen(fd, "rb")


def _open_image(handle: IO[bytes], name: str, n_bytes: int) -> Image.Image:
    """Read the header: any failure is the image's one-line error (a file cut inside its header too)."""
    try:
        with _BOMB_GUARD, warnings.catch_warnings(record=True) as raised:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(handle)
            if image.format in _EXIF_IN_HEADER:  # parsed here, once (Pillow keeps it), so its warnings are caught
                with contextlib.suppress(Exception):  # a damaged EXIF fails where it is used, as before
                    image.getexif()
        for warning in raised:  # Pillow's own ("Corrupt EXIF data") name no file: say which
            if f"{os.sep}PIL{os.sep}" in warning.filename:
                warnings.warn(f"{name}: {warning.message}", warning.category, stacklevel=2)
            else:  # another thread's, caught while the filters were ours: passed on as it was
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return image
    except UnidentifiedImageError as error:
        message = f"{name}: not an image (unknown format)" if n_bytes else f"{name}: empty file (0 bytes)"
        raise ImageDecodeError(message) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(name, found.group(1) if found else "too many") from error
    except Exception as error:  # a header cut short or malformed: OSError, SyntaxError, struct.error, ...
        raise cannot_decode(name, error) from error


def cannot_decode(name: str, error: BaseException) -> ImageDecodeError:
    detail = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
    return ImageDecodeError(f"{name}: cannot decode image ({detail})")


def check_header(image: Image.Image, handle: IO[bytes] | None, name: str, n_bytes: int) -> None:
    """Refuse, before decoding, more than :data:`MAX_PIXELS` and a JPEG claiming more than its bytes can code."""
    width, height = image.size
    if width * height > MAX_PIXELS:  # also when the user lifted Pillow's own limit
        raise _too_large(name, width * height)
    if image.format not in _JPEG_FORMATS or handle is None or width * height <= _MAX_JPEG_PIXELS_PER_BYTE * n_bytes:
        return  # libjpeg would fill the pixels the bytes cannot code with grey
    position = handle.tell()
    handle.seek(0)
    head = handle.read(_JPEG_HEAD_BYTES)
    handle.seek(position)
    if _frame_marker(head) not in _ARITHMETIC_FRAMES:  # arithmetic coding may take less than a bit a block
        message = f"{name}: cannot decode image (header claims {width} x {height} pixels, the file has {n_bytes} bytes)"
        raise ImageDecodeError(message)


def _frame_marker(head: bytes) -> int:
    """The start-of-frame marker (0xC0-0xCF) of a JPEG's header bytes; 0 if not found there."""
    offset = 2
    while offset + 4 <= len(head) and head[offset] == 0xFF:
        marker = head[offset + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        if marker == 0xDA:  # start of scan: no frame header before it
            return 0
        offset += 2 + int.from_bytes(head[offset + 2 : offset + 4], "big")
    return 0


def _check_jpeg_complete(image: Image.Image, handle: IO[bytes] | None, data: bytes | None, name: str) -> None:
    """Refuse a JPEG whose coded data ends early (cut, then closed by an EOI marker): libjpeg fills the rest.

    In a baseline JPEG the filled area is flat to the bottom-right corner, so only images whose last pixels
    are equal get the strict second look (libjpeg-turbo through simplejpeg, which reports the premature end);
    a progressive JPEG cut in a later scan looks whole but blurred, so every progressive one gets it.
    """
    corner = np.asarray(image.crop((max(0, image.width - 2), image.height - 1, image.width, image.height)))
    pixels = corner.reshape(corner.shape[0] * corner.shape[1], -1)
    if not image.info.get("progressive") and (pixels.size == 0 or not (pixels == pixels[0]).all()):
        return
    if data is None and handle is not None:
        handle.seek(0)
        data = handle.read()
    if not data:
        return
    import simplejpeg  # only for the rare suspicious image

    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", min_factor=8, strict=True)
    except ValueError as error:
        if "premature end" in str(error).lower():
            raise cannot_decode(name, error) from error


@contextlib.contextmanager
def opened(source: ImageSource, name: str) -> Iterator[tuple[Image.Image, IO[bytes] | None, int]]:
    """The lazily opened image, its open file (closed on leaving) and the byte count of encoded sources."""
    if isinstance(source, (Image.Image, np.ndarray)):
        yield _of_pixels(source, name), None, 0
        return
    handle: IO[bytes] = io.BytesIO(source) if isinstance(source, bytes) else _open_file(source, name)
    with handle:
        n_bytes = len(source) if isinstance(source, bytes) else os.fstat(handle.fileno()).st_size
        image = _open_image(handle, name, n_bytes)
        try:
            yield image, handle, n_bytes
        finally:
            image.close()


def decode_image(source: ImageSource, preprocessing: Preprocessing, name: str | None = None) -> Image.Image:
    """Decode ``source`` to an upright RGB image, reduced early when it is far larger than needed.

    Parameters
    ----------
    source : str, Path, bytes, ndarray or PIL.Image.Image
        An image file, the bytes of one, an H x W x 3 uint8 array or a Pillow image.
    preprocessing : Preprocessing
        Decides how far a large JPEG may be reduced while decoding.
    name : str or None, default=None
        What error messages call the image; None: the path, or ``<image>``.

    Returns
    -------
    PIL.Image.Image
        In mode RGB, turned upright by its EXIF orientation.

    Raises
    ------
    ImageDecodeError
        With one line naming the image: unreadable, not a regular file (a FIFO, a folder),
        empty, not an image, cut short (inside its header, in its data, or closed early by an
        end marker), claiming more pixels than its bytes can hold, or larger than
        :data:`MAX_PIXELS` (refused from its header, before decoding). Whatever else goes
        wrong inside the decoder is this error too.

    Examples
    --------
    >>> pre = Preprocessing(32, 1.0, "bilinear")
    >>> decode_image(np.zeros((20, 30, 3), np.uint8), pre).size
    (30, 20)
    >>> decode_image(b"", pre, name="<bytes 0>")
    Traceback (most recent call last):
    ...
    cnncodes.errors.ImageDecodeError: <bytes 0>: empty file (0 bytes)
    """
    name = name or name_of(source)
    with opened(source, name) as (image, handle, n_bytes):
        return decode_from(image, preprocessing, name, handle, source, n_bytes)


def name_of(source: ImageSource) -> str:
    """What error messages call an image given without a name: its path, or ``<image>``."""
    return str(source) if isinstance(source, (str, Path)) else "<image>"


def needed_scale(size: tuple[int, int], preprocessing: Preprocessing) -> float:
    """How far an image of ``size`` may shrink before cutting its views: their shorter side over its own."""
    needed_short = preprocessing.input_size / preprocessing.crop_fraction
    if preprocessing.views == "razavian16":
        needed_short = preprocessing.input_size / math.sqrt(_CROP_AREA_RAZAVIAN)
    return needed_short / min(size)


def decode_from(
    image: Image.Image,
    preprocessing: Preprocessing,
    name: str,
    handle: IO[bytes] | None,
    source: ImageSource,
    n_bytes: int,
) -> Image.Image:
    """:func:`decode_image` of an image that :func:`opened` opened (its file still open)."""
    try:
        return _decode(image, preprocessing, name, handle, source if isinstance(source, bytes) else None, n_bytes)
    except ImageDecodeError:
        raise
    except Exception as error:  # the decoder's own errors, whatever their class: this image fails alone
        raise cannot_decode(name, error) from error


def _decode(
    image: Image.Image,
    preprocessing: Preprocessing,
    name: str,
    handle: IO[bytes] | None,
    data: bytes | None,
    n_bytes: int,
) -> Image.Image:
    width, height = image.size
    check_header(image, handle, name, n_bytes)
    is_jpeg = image.format in _JPEG_FORMATS and handle is not None
    if DRAFT and image.format == "JPEG":
        scale = needed_scale(image.size, preprocessing)
        if scale < 0.5:  # draft only reduces by 1/2, 1/4 or 1/8, never below the request
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    image.load()
    if is_jpeg:
        _check_jpeg_complete(image, handle, data, name)
    if handle is None:  # the caller's own image: never modified
        return _to_rgb(ImageOps.exif_transpose(image))
    ImageOps.exif_transpose(image, in_place=True)  # our image: no copy of the pixels when it is upright
    rgb = _to_rgb(image)
    # Detach from the file, which closes on return (closing an image frees its pixels): a second
    # Image on the same pixel core, not a copy of them (one copy fewer per image in the hot loop).
    return image._new(image.im) if rgb is image else rgb


def _square(image: Image.Image, box: tuple[float, float, float, float], size: int, method: int) -> np.ndarray:
    return np.asarray(image.resize((size, size), method, box=box), dtype=np.uint8)


def make_views(image: Image.Image, preprocessing: Preprocessing) -> list[np.ndarray]:
    """Cut the model inputs of one RGB image.

    - ``none``: centre crop of ``crop_fraction`` of the shorter side, resized.
    - ``flip``: that and its mirror.
    - ``5crop`` / ``10crop``: the 4 corner crops and the centre crop (each a square of
      ``crop_fraction`` of the shorter side), and for 10crop their mirrors.
    - ``razavian16`` (Razavian et al. 2014): the whole image, the 4 corner and the
      centre crops of 4/9 of the area, rotations by +-5 degrees, and the mirror of each.

    Parameters
    ----------
    image : PIL.Image.Image
        An RGB image, as :func:`decode_image` returns it.
    preprocessing : Preprocessing
        Input size, crop, interpolation and view protocol.

    Returns
    -------
    list of ndarray of shape (input_size, input_size, 3), uint8
        ``n_views(preprocessing.views)`` arrays; mirrored views follow the originals.

    Examples
    --------
    >>> image = Image.new("RGB", (40, 30))
    >>> views = make_views(image, Preprocessing(16, 0.875, "bilinear", views="flip"))
    >>> len(views), views[0].shape
    (2, (16, 16, 3))
    """
    size, method = preprocessing.input_size, _INTERPOLATION[preprocessing.interpolation]
    width, height = image.size
    if not width or not height:
        raise ValueError(f"it has no pixels ({width} x {height})")
    views: list[np.ndarray]
    if preprocessing.views == "razavian16":
        side_w, side_h = width * 2 / 3, height * 2 / 3
        boxes = [(0.0, 0.0, float(width), float(height))] + _five_boxes(width, height, side_w, side_h)
        views = [_square(image, box, size, method) for box in boxes]
        for angle in (-_ROTATION_DEGREES, _ROTATION_DEGREES):
            rotated = image.rotate(angle, resample=Image.Resampling.BILINEAR)
            views.append(_square(rotated, (0.0, 0.0, float(width), float(height)), size, method))
        return views + [view[:, ::-1].copy() for view in views]
    side = min(width, height) * preprocessing.crop_fraction
    centre = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    if preprocessing.views in ("none", "flip"):
        views = [_square(image, centre, size, method)]
        if preprocessing.views == "flip":
            views.append(views[0][:, ::-1].copy())
        return views
    views = [_square(image, box, size, method) for box in _five_boxes(width, height, side, side)]
    if preprocessing.views == "10crop":
        views += [view[:, ::-1].copy() for view in views]
    return views


def _five_boxes(width: int, height: int, side_w: float, side_h: float) -> list[tuple[float, float, float, float]]:
    """Top-left, top-right, bottom-left, bottom-right and centre boxes of side_w x side_h."""
    w, h = float(width), float(height)
    return [
        (0.0, 0.0, side_w, side_h),
        (w - side_w, 0.0, w, side_h),
        (0.0, h - side_h, side_w, h),
        (w - side_w, h - side_h, w, h),
        ((w - side_w) / 2, (h - side_h) / 2, (w + side_w) / 2, (h + side_h) / 2),
    ]
