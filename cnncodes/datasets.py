"""Input discovery: folder-per-class trees, CSV files and lists of paths -> (paths, labels)."""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError
from .messages import display_name

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


def _images_below(folder: Path, owners: dict[tuple[int, int], str | None] | None = None) -> list[Path]:
    """Image files below ``folder``, sorted, hidden entries left out.

    Symlinked folders are followed, each real folder once (a link back up is not a loop). A
    broken symlink or a symlink loop with an image name is kept, to fail by name; so is a
    folder that cannot be listed (permissions), to fail as "cannot list folder" rather than
    vanish with the images in it. ``owners`` maps the real folders of a class tree to the class
    holding them (None: the top folder), shared across its classes: a folder reached from two
    classes would give its images two labels, and is refused.
    """
    found: list[Path] = []
    owners = {} if owners is None else owners
    owner = owners.get(_identity(folder)) if owners else None
    walked: set[tuple[int, int]] = set()

    def keep_unlistable(error: OSError) -> None:
        if error.filename is not None:
            found.append(Path(error.filename))

    for parent, folder_names, file_names in os.walk(folder, onerror=keep_unlistable, followlinks=True):
        identity = _identity(Path(parent))
        if identity is None:
            continue
        holder = owners.setdefault(identity, owner)
        if holder != owner:
            held_by = f"class {holder!r}" if holder is not None else "the top folder"
            message = f"{display_name(parent)}: a link to a folder of {held_by}; an image cannot have two labels"
            raise InputError(message)
        if identity in walked:  # reached again through a link: its images are listed
            folder_names[:] = []
            continue
        walked.add(identity)
        folder_names[:] = [name for name in folder_names if not name.startswith(".")]
        for name in file_names:
            if not name.startswith(".") and Path(name).suffix.lower() in _IMAGE_SUFFIXES:
                found.append(Path(parent, name))
    return sorted(found)


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(folder)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _list_or_fail(folder: Path) -> list[Path]:
    """The entries of ``folder``; a folder given as input that cannot be listed is a one-line error."""
    try:
        return list(folder.iterdir())
    except OSError as error:
        message = f"{folder}: cannot list folder ({error.strerror or error})"
        raise InputError(message) from None


def _is_loose_image(entry: Path) -> bool:
    return not entry.name.startswith(".") and entry.suffix.lower() in _IMAGE_SUFFIXES and not entry.is_dir()


def _from_folder(folder: Path) -> Dataset:
    entries = _list_or_fail(folder)
    class_dirs = sorted(d for d in entries if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        return Dataset(_images_below(folder))
    paths: list[Path] = []
    labels: list[int] = []
    empty = []
    owners: dict[tuple[int, int], str | None] = {}  # each real folder of the tree: the class it belongs to
    for key, owner in [(_identity(folder), None), *((_identity(d), d.name) for d in class_dirs)]:
        if key is not None:
            owners[key] = owner
    for label, class_dir in enumerate(class_dirs):
        found = _images_below(class_dir, owners)
        paths += found
        labels += [label] * len(found)
        if not found:
            empty.append(class_dir.name)
    if empty:  # kept as classes (label indices stay stable), but a head cannot learn them: say so once
        logging.getLogger("cnncodes").warning(f"{folder}: class folder(s) {', '.join(empty)} hold no images")
    loose = [entry.name for entry in entries if _is_loose_image(entry)]
    if loose:  # beside the class folders, in no class
        shown = ", ".join(display_name(name) for name in sorted(loose)[:3]) + (", ..." if len(loose) > 3 else "")
        message = f"{folder}: {len(loose)} image file(s) beside the class folders, in no class, left out: {shown}"
        logging.getLogger("cnncodes").warning(message)
    return Dataset(paths, np.array(labels, dtype=np.int64), [display_name(d.name) for d in class_dirs])


def _csv_text(csv_path: Path) -> str:
    """The CSV's text: UTF-8, with or without the byte-order mark that Excel writes."""
    try:
        data = csv_path.read_bytes()
    except OSError as error:
        message = f"{csv_path}: cannot read file ({error.strerror or error})"
        raise InputError(message) from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        message = f"{csv_path}: not UTF-8 text (byte 0x{data[error.start]:02x} on line {line}); save it as UTF-8"
        raise InputError(message) from None


def _csv_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """The non-blank rows with their line numbers, without a ``path`` header."""
    rows, line = [], 0
    try:
        reader = csv.reader(io.StringIO(_csv_text(csv_path), newline=""))
        for row in reader:
            first, line = line + 1, reader.line_num
            if any("\n" in cell or "\r" in cell for cell in row):  # a path or label with a line break
                message = f"{csv_path}: line {first}: a quoted field runs over a line break (a quote left open?)"
                raise InputError(message)
            if row and any(cell.strip() for cell in row):
                rows.append((line, row))
    except csv.Error as error:
        message = f"{csv_path}: not a CSV file ({error})"
        raise InputError(message) from None
    if rows and rows[0][1][0].strip().lower() == "path":
        rows = rows[1:]
    return rows


def _from_csv(csv_path: Path) -> Dataset:
    numbered = _csv_rows(csv_path)
    rows = [row for _, row in numbered]
    if not rows:
        message = f"{csv_path}: no rows; expected 'path[,label]' lines"
        raise InputError(message)
    widths = {len(row) for row in rows}
    if not widths <= {1, 2}:
        message = f"{csv_path}: expected 1 or 2 columns (path[,label]), found rows of {sorted(widths)} columns"
        raise InputError(message)
    base = csv_path.parent
    paths = [Path(row[0].strip()) if Path(row[0].strip()).is_absolute() else base / row[0].strip() for row in rows]
    labelled = [len(row) == 2 and bool(row[1].strip()) for row in rows]
    if not any(labelled):
        return Dataset(paths)
    if not all(labelled):
        line = numbered[labelled.index(False)][0]
        first = numbered[labelled.index(True)][0]
        message = f"{csv_path}: line {line} has no label but line {first} has one; label every row or none"
        raise InputError(message)
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
