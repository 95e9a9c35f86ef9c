"""The fast decoder (libjpeg-turbo through simplejpeg, SIMD crop-resize by OpenCV), and the choice of decoder."""

from __future__ import annotations

import math
from typing import IO, Any, Callable

import cv2
import numpy as np
import simplejpeg

from . import images
from .errors import ImageDecodeError
from .images import ImageSource, Preprocessing

__all__ = ["decode_array", "make_fast_views", "prepare_views"]

cv2.setNumThreads(1)  # the decode threads are the parallelism; OpenCV's own pool would only oversubscribe
_DCT_FACTORS = (8, 4, 2)  # the reductions both decoders share (Pillow's draft knows no others)
_UPRIGHT = {  # EXIF orientation -> the array operation that turns the stored pixels upright
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}


def decode_array(source: ImageSource, preprocessing: Preprocessing, name: str | None = None) -> np.ndarray:
    """Decode ``source`` to an upright H x W x 3 uint8 array, JPEGs through libjpeg-turbo directly.

    The same checks as :func:`cnncodes.images.decode_image` refuse the same bad files; a
    JPEG decodes at the same DCT scale, to the same pixels, without Pillow's copies. Any
    other image (and a JPEG in CMYK) goes through :func:`~cnncodes.images.decode_image`.

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
    ndarray of shape (H, W, 3), uint8

    Raises
    ------
    ImageDecodeError
        As :func:`~cnncodes.images.decode_image`.

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> jpeg = io.BytesIO()
    >>> Image.new("RGB", (40, 30), (200, 10, 10)).save(jpeg, "JPEG")
    >>> decode_array(jpeg.getvalue(), Preprocessing(32, 1.0, "bilinear")).shape
    (30, 40, 3)
    """
    name = name or images.name_of(source)
    with images.opened(source, name) as (image, handle, n_bytes):
        if image.format != "JPEG" or handle is None or image.mode not in ("RGB", "L"):
            return np.asarray(images.decode_from(image, preprocessing, name, handle, source, n_bytes))
        try:
            images.check_header(image, handle, name, n_bytes)
            factor = _dct_factor(image.size, preprocessing)
            orientation = image.getexif().get(0x0112, 1)
            array = _decode_jpeg(_bytes_of(source, handle), image.size, factor, name)
        except ImageDecodeError:
            raise
        except Exception as error:  # whatever else the header or the decoder raise: this image fails alone
            raise images.cannot_decode(name, error) from error
    turn = _UPRIGHT.get(orientation)
    return array if turn is None else np.ascontiguousarray(turn(array))


def _bytes_of(source: ImageSource, handle: IO[bytes]) -> bytes:
    if isinstance(source, bytes):
        return source
    handle.seek(0)
    return handle.read()


def _dct_factor(size: tuple[int, int], preprocessing: Preprocessing) -> int:
    """The reduction Pillow's ``draft`` would choose in :func:`~cnncodes.images.decode_image` (1: none)."""
    scale = images.needed_scale(size, preprocessing)
    if not images.DRAFT or scale >= 0.5:
        return 1
    width, height = size
    most = min(width // math.ceil(width * scale), height // math.ceil(height * scale))
    return next((factor for factor in _DCT_FACTORS if factor <= most), 1)


def _decode_jpeg(data: bytes, size: tuple[int, int], factor: int, name: str) -> np.ndarray:
    # simplejpeg takes the strongest reduction that keeps these sides: exactly 1/factor, never an M/8 in between
    reduced = (
        {"min_width": math.ceil(size[0] / factor), "min_height": math.ceil(size[1] / factor)} if factor > 1 else {}
    )
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, **reduced)
    except ValueError as error:
        if "premature end" in str(error).lower():  # cut short: libjpeg would fill the rest with grey
            raise images.cannot_decode(name, error) from error
        # a recoverable flaw (e.g. extraneous bytes before a marker) that Pillow's decoder also passes over
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False, **reduced)


def make_fast_views(array: np.ndarray, preprocessing: Preprocessing) -> list[np.ndarray]:
    """Cut the model inputs of one upright RGB array, as :func:`cnncodes.images.make_views` does.

    The centre crop (and its mirror) shrunk to no less than half is resampled bilinearly by
    OpenCV from the exact crop box, with Pillow's pixel centres (there a bilinear sample spans
    what area averaging would, at a quarter of its cost). Otherwise the box is rounded to whole
    pixels and resized: area averaging when it shrinks further, bicubic or bilinear (the
    preprocessing's interpolation) when it grows (:data:`~cnncodes.images.FAST_RESIZE_RULE`).
    The other view protocols are cut by Pillow from these pixels.

    Parameters
    ----------
    array : ndarray of shape (H, W, 3), uint8
        As :func:`decode_array` returns it.
    preprocessing : Preprocessing
        Input size, crop, interpolation and view protocol.

    Returns
    -------
    list of ndarray of shape (input_size, input_size, 3), uint8

    Examples
    --------
    >>> views = make_fast_views(np.zeros((30, 40, 3), np.uint8), Preprocessing(16, 0.875, "bilinear", views="flip"))
    >>> len(views), views[0].shape
    (2, (16, 16, 3))
    """
    if preprocessing.views not in images.FAST_VIEWS:
        from PIL import Image

        return images.make_views(Image.fromarray(array), preprocessing)
    height, width = array.shape[:2]
    if not width or not height:
        raise ValueError(f"it has no pixels ({width} x {height})")
    side, size = min(width, height) * preprocessing.crop_fraction, preprocessing.input_size
    left, top = (width - side) / 2, (height - side) / 2
    step = side / size  # source pixels per output pixel
    if 1 <= step <= 2:
        # output pixel i samples the source at left + (i + 0.5) * step - 0.5, as Pillow's resize of a box does
        to_source = np.array([[step, 0.0, left + step / 2 - 0.5], [0.0, step, top + step / 2 - 0.5]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        view = cv2.warpAffine(array, to_source, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    else:  # separable resizes of the box rounded to whole pixels (a bicubic warp costs 4x a bicubic resize)
        x, y, box_side = round(left), round(top), max(1, round(side))
        grow = cv2.INTER_CUBIC if preprocessing.interpolation == "bicubic" else cv2.INTER_LINEAR
        box = array[y : y + box_side, x : x + box_side]
        view = cv2.resize(box, (size, size), interpolation=cv2.INTER_AREA if step > 2 else grow)
    views = [view]
    if preprocessing.views == "flip":
        views.append(view[:, ::-1].copy())
    return views


def prepare_views(source: ImageSource, preprocessing: Preprocessing, name: str) -> list[np.ndarray]:
    """The uint8 model inputs of one image, by the preprocessing's decoder: what each decode thread runs.

    Parameters
    ----------
    source : str, Path, bytes, ndarray or PIL.Image.Image
        One image.
    preprocessing : Preprocessing
        Its ``decoder`` picks :mod:`cnncodes.fastdecode` ("fast") or :mod:`cnncodes.images` ("exact").
    name : str
        What an error calls the image.

    Returns
    -------
    list of ndarray of shape (input_size, input_size, 3), uint8

    Raises
    ------
    ImageDecodeError
        With one line naming the image.
    """
    cut: Callable[[Any, Preprocessing], list[np.ndarray]]
    if preprocessing.decoder == "fast":
        pixels: Any = decode_array(source, preprocessing, name)
        cut = make_fast_views
    else:
        pixels, cut = images.decode_image(source, preprocessing, name), images.make_views
    try:
        return cut(pixels, preprocessing)
    except Exception as error:  # e.g. an image of zero width: that image fails alone
        raise ImageDecodeError(f"{name}: cannot cut the views of the image ({error})") from error
