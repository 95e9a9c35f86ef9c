"""Input discovery: folder-per-class trees, CSV files and lists of paths -> (paths, labels)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError

__all__ = ["Dataset", "load_dataset"]

_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass
class Dataset:
    """Image paths with optional integer labels and class names.

    Parameters
    ----------
    paths : list of Path
        The image files, in order.
    labels : ndarray of shape (n,), int64, or None, default=None
        Index of each image's class in ``class_names``.
    class_names : list of str or None, default=None
        The class names, sorted.

    Examples
    --------
    >>> dataset = Dataset([Path("a.jpg"), Path("b.jpg")], np.array([0, 1]), ["ants", "bees"])
    >>> len(dataset), dataset.class_names[dataset.labels[1]]
    (2, 'bees')
    """

    paths: list[Path]
    labels: np.ndarray | None = None  # (n,) int64, indices into class_names
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.paths)


def _images_below(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in _IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _from_folder(folder: Path) -> Dataset:
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        return Dataset(_images_below(folder))
    paths: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        found = _images_below(class_dir)
        paths += found
        labels += [label] * len(found)
    return Dataset(paths, np.array(labels, dtype=np.int64), [d.name for d in class_dirs])


def _from_csv(csv_path: Path) -> Dataset:
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and rows[0][0].strip().lower() == "path":
        rows = rows[1:]
    if not rows:
        message = f"{csv_path}: no rows; expected 'path[,label]' lines"
        raise InputError(message)
    widths = {len(row) for row in rows}
    if not widths <= {1, 2}:
        message = f"{csv_path}: expected 1 or 2 columns (path[,label]), found rows of {sorted(widths)} columns"
        raise InputError(message)
    base = csv_path.parent
    paths = [Path(row[0].strip()) if Path(row[0].strip()).is_absolute() else base / row[0].strip() for row in rows]
    if widths != {2}:
        return Dataset(paths)
    names = sorted({row[1].strip() for row in rows})
    lookup = {name: index for index, name in enumerate(names)}
    return Dataset(paths, np.array([lookup[row[1].strip()] for row in rows], dtype=np.int64), names)


def load_dataset(source: str | Path | Sequence[str | Path]) -> Dataset:
    """Find the images (and labels) of a folder tree, a CSV file, or a list of files and folders.

    Parameters
    ----------
    source : str, Path or sequence of them
        - a folder with one subfolder per class: labels and class names (sorted) from
          the subfolders; a folder without subfolders: its images, unlabelled;
        - a ``.csv`` file of ``path[,label]`` rows (a ``path`` header is optional;
          relative paths are relative to the CSV's folder);
        - a list of image files and folders: their images, unlabelled.

    Returns
    -------
    Dataset

    Raises
    ------
    InputError
        If a path does not exist, or a CSV file is malformed.

    Examples
    --------
    >>> import shutil, tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("ants/a.jpg", "bees/b.png", "bees/notes.txt"):
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     _ = (root / name).write_bytes(b"")
    >>> dataset = load_dataset(root)
    >>> [p.name for p in dataset.paths], dataset.labels.tolist(), dataset.class_names
    (['a.jpg', 'b.png'], [0, 1], ['ants', 'bees'])
    >>> _ = (root / "list.csv").write_text("bees/b.png,bee")
    >>> load_dataset(root / "list.csv").class_names
    ['bee']
    >>> shutil.rmtree(root)
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if len(sources) == 1:
        only = Path(sources[0])
        if only.is_dir():
            return _from_folder(only)
        if only.suffix.lower() == ".csv" and only.is_file():
            return _from_csv(only)
    paths: list[Path] = []
    for item in map(Path, sources):
        if item.is_dir():
            paths += _images_below(item)
        elif item.exists() or item.suffix.lower() in _IMAGE_SUFFIXES:
            paths.append(item)  # a missing image file becomes a per-image failure
        else:
            message = f"{item}: no such file or folder"
            raise InputError(message)
    if len(sources) == 1 and not Path(sources[0]).exists():
        message = f"{sources[0]}: no such file or folder"
        raise InputError(message)
    return Dataset(paths)
