"""Image decoding, orientation, colour conversion and resize/crop to uint8 model inputs; test-time views."""

from __future__ import annotations

import io
import math
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageDecodeError, InputError
from .messages import one_of_message
from .params import VIEWS

__all__ = ["Preprocessing", "ImageSource", "MAX_PIXELS", "decode_image", "make_views", "n_views"]

MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold (about 0.25 GB of RGB): refuse, never decode
DRAFT = True  # JPEGs far larger than needed decode at a reduced DCT scale: a fixed rule, part of every spec
_RGB_RULE = "exif-transpose; alpha over white; 16-bit >> 8; CMYK/palette/L via Pillow"
_VIEW_COUNTS = {"none": 1, "flip": 2, "5crop": 5, "10crop": 10, "razavian16": 16}
_INTERPOLATION = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_ROTATION_DEGREES = 5.0  # the "small rotations" of the 16-view protocol
_CROP_AREA_RAZAVIAN = 4 / 9  # each Razavian crop covers 4/9 of the area: 2/3 of each side
# Pillow warns (rather than refuses) between 1x and 2x its limit; turning that warning into an error
# needs the process-wide warning filters, so decoders take turns for the instant of Image.open.
_BOMB_GUARD = threading.Lock()

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

    def as_dict(self) -> dict[str, object]:
        """The plain form that feature-set specs hold (with the fixed decoding rules).

        Returns
        -------
        dict
            ``input_size``, ``crop_fraction``, ``interpolation``, ``draft``, ``views`` and ``rgb_rule``.

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


def _open(source: ImageSource, name: str) -> Image.Image:
    """Open lazily (header only): a Pillow image, an array, encoded bytes or a file."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        array = source
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
            message = f"{name}: expected an H x W x 3 uint8 array, got shape {array.shape} and dtype {array.dtype}"
            raise ImageDecodeError(message)
        return Image.fromarray(array[..., :3])
    try:
        handle: IO[bytes] = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as error:
        message = f"{name}: cannot read file ({error.strerror or error})"
        raise ImageDecodeError(message) from error
    try:
        with _BOMB_GUARD, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(handle)
    except UnidentifiedImageError as error:
        handle.close()
        message = f"{name}: not an image (unknown format)" if _size(source) else f"{name}: empty file (0 bytes)"
        raise ImageDecodeError(message) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        handle.close()
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise _too_large(name, found.group(1) if found else "too many") from error


def _size(source: str | Path | bytes) -> int:
    if isinstance(source, bytes):
        return len(source)
    try:
        return Path(source).stat().st_size
    except OSError:
        return 0


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
        With one line naming the image: unreadable, empty, not an image, truncated, or
        larger than :data:`MAX_PIXELS` (refused from its header, before decoding).

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
    name = name or (str(source) if isinstance(source, (str, Path)) else "<image>")
    image = _open(source, name)
    try:
        width, height = image.size
        if width * height > MAX_PIXELS:  # also when the user lifted Pillow's own limit
            raise _too_large(name, width * height)
        if DRAFT and image.format == "JPEG":
            needed_short = preprocessing.input_size / preprocessing.crop_fraction
            if preprocessing.views == "razavian16":
                needed_short = preprocessing.input_size / math.sqrt(_CROP_AREA_RAZAVIAN)
            scale = needed_short / min(width, height)
            if scale < 0.5:  # draft only reduces by 1/2, 1/4 or 1/8, never below the request
                image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        detail = str(error) or type(error).__name__
        message = f"{name}: cannot decode image ({detail})"
        raise ImageDecodeError(message) from error


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
