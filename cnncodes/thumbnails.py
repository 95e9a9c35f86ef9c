"""Small JPEG thumbnails of images for the report pages, written beside the page (Pillow through images)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from .errors import ImageDecodeError
from .fileio import atomic_path
from .images import Preprocessing, decode_image

__all__ = ["THUMBNAIL_SIZE", "THUMBNAIL_DIR", "write_thumbnails"]

THUMBNAIL_SIZE = 140  # pixels of the longer side
THUMBNAIL_DIR = "thumbnails"  # the subfolder of the report folder


def _write_one(source: str, path: Path, size: int) -> bool:
    # the preprocessing only lets a large JPEG decode at a reduced scale; the crop is not applied
    try:
        image = decode_image(source, Preprocessing(size, 1.0, "bilinear"))
    except ImageDecodeError:
        return False  # gone or unreadable since its codes were made: the page shows a placeholder
    image.thumbnail((size, size))
    with atomic_path(path, suffix=".jpg") as temporary:
        image.save(temporary, format="JPEG", quality=82)
    return True


def write_thumbnails(
    sources: Sequence[str], folder: Path | str, *, size: int = THUMBNAIL_SIZE, n_workers: int | None = None
) -> list[str | None]:
    """Write a thumbnail of each image into ``folder/thumbnails`` and return their URLs relative to ``folder``.

    The files are numbered (``0001.jpg``, ...), never named after the images, so no
    user file name reaches a URL.

    Parameters
    ----------
    sources : sequence of str
        Image paths.
    folder : Path or str
        The report folder; the subfolder is created if missing.
    size : int, default=140
        Longest side in pixels; the aspect ratio is kept.
    n_workers : int or None, default=None
        Decode threads; None: Python's default.

    Returns
    -------
    list of str or None
        ``"thumbnails/0001.jpg"``..., or None where the image cannot be read.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> ant = sorted(Path("../shared/data/hymenoptera/val/ants").glob("*.jpg"))[0]
    >>> write_thumbnails([str(ant), str(folder / "missing.jpg")], folder)
    ['thumbnails/0001.jpg', None]
    >>> shutil.rmtree(folder)
    """
    target = Path(folder) / THUMBNAIL_DIR
    names = [f"{i:04d}.jpg" for i in range(1, len(sources) + 1)]
    with ThreadPoolExecutor(n_workers) as pool:
        written = list(pool.map(lambda pair: _write_one(pair[0], target / pair[1], size), zip(sources, names)))
    return [f"{THUMBNAIL_DIR}/{name}" if ok else None for name, ok in zip(names, written)]
