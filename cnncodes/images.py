"""Image decoding, orientation, colour conversion and resize/crop to uint8 batches; views."""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageDecodeError

__all__ = ["Preprocessing", "VIEWS", "MAX_PIXELS", "decode_image", "to_rgb", "make_views", "n_views"]

MAX_PIXELS = 89_478_485  # Pillow's own bomb threshold (about 0.25 GB of RGB): refuse, never decode
VIEWS = ("none", "flip", "5crop", "10crop", "razavian16")
_INTERPOLATION = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_ROTATION_DEGREES = 5.0  # the "small rotations" of the 16-view protocol
_CROP_AREA_RAZAVIAN = 4 / 9  # each Razavian crop covers 4/9 of the area: 2/3 of each side

ImageSource = Union[str, Path, bytes, np.ndarray, Image.Image]
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey tail


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's uint8 input; every field changes the codes."""

    input_size: int  # square side sent to the model
    crop_fraction: float  # centre crop of this fraction of the shorter side
    interpolation: str  # "bicubic" or "bilinear"
    draft: bool = True  # let JPEG decode at a reduced DCT scale when much larger than needed
    views: str = "none"  # one of VIEWS

    def as_dict(self) -> dict[str, object]:
        """Plain form for feature-set specs."""
        return {
            "input_size": self.input_size,
            "crop_fraction": self.crop_fraction,
            "interpolation": self.interpolation,
            "draft": self.draft,
            "views": self.views,
            "rgb_rule": "exif-transpose; alpha over white; 16-bit >> 8; CMYK/palette/L via Pillow",
        }


def n_views(views: str) -> int:
    """How many arrays :func:`make_views` returns per image."""
    return {"none": 1, "flip": 2, "5crop": 5, "10crop": 10, "razavian16": 16}[views]


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB by a fixed rule.

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


def _open(source: ImageSource, name: str) -> Image.Image:
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
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as error:
        message = f"{name}: cannot read file ({error.strerror or error})"
        raise ImageDecodeError(message) from error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(handle)
    except UnidentifiedImageError as error:
        handle.close()
        message = f"{name}: not an image (unknown format)" if _size(source) else f"{name}: empty file (0 bytes)"
        raise ImageDecodeError(message) from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        handle.close()
        found = re.search(r"\((\d+) pixels\)", str(error))
        pixels = found.group(1) if found else "too many"
        message = f"{name}: image too large to decode safely ({pixels} pixels > {MAX_PIXELS})"
        raise ImageDecodeError(message) from error


def _size(source: ImageSource) -> int:
    if isinstance(source, bytes):
        return len(source)
    try:
        return Path(source).stat().st_size  # type: ignore[arg-type]
    except OSError:
        return 0


def decode_image(source: ImageSource, preprocessing: Preprocessing, name: str | None = None) -> Image.Image:
    """Decode ``source`` to an upright RGB image, reduced early when it is far larger than needed.

    Raises
    ------
    ImageDecodeError
        With one line naming the file: unreadable, empty, not an image, truncated,
        or larger than :data:`MAX_PIXELS`.
    """
    name = name or (str(source) if isinstance(source, (str, Path)) else "<image>")
    image = _open(source, name)
    try:
        width, height = image.size
        if width * height > MAX_PIXELS:
            message = f"{name}: image too large to decode safely ({width}x{height} pixels > {MAX_PIXELS})"
            raise ImageDecodeError(message)
        if preprocessing.draft and image.format == "JPEG":
            needed_short = preprocessing.input_size / preprocessing.crop_fraction
            if preprocessing.views == "razavian16":
                needed_short = preprocessing.input_size / math.sqrt(_CROP_AREA_RAZAVIAN)
            scale = needed_short / min(width, height)
            if scale < 0.5:  # draft only reduces by 1/2, 1/4 or 1/8, never below the request
                image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        detail = str(error) or type(error).__name__
        message = f"{name}: cannot decode image ({detail})"
        raise ImageDecodeError(message) from error


def _square(image: Image.Image, box: tuple[float, float, float, float], size: int, method: int) -> np.ndarray:
    return np.asarray(image.resize((size, size), method, box=box), dtype=np.uint8)


def make_views(image: Image.Image, preprocessing: Preprocessing) -> list[np.ndarray]:
    """Cut the model inputs of one RGB image: uint8 arrays of (size, size, 3).

    - ``none``: centre crop of ``crop_fraction`` of the shorter side, resized.
    - ``flip``: that and its mirror.
    - ``5crop`` / ``10crop``: the 4 corner crops and the centre crop (each a square of
      ``crop_fraction`` of the shorter side), and for 10crop their mirrors.
    - ``razavian16`` (Razavian et al. 2014): the whole image, the 4 corner and the
      centre crops of 4/9 of the area, rotations by +-5 degrees, and the mirror of each.
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
