"""Every input form that extraction accepts, normalized in one place: named image sources, with labels when known."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from .datasets import Dataset, load_dataset
from .errors import InputError
from .messages import display_name

__all__ = ["Inputs", "Source", "read_inputs", "display_name"]

Source = Union[Path, bytes, np.ndarray, Image.Image]  # what decoding and content keys take
_EXPECTED = "paths, a folder, a CSV, image bytes, uint8 arrays or PIL images"
_TEXT_KINDS = "OU"  # numpy kinds of a column of paths: objects or unicode ("S" would drop trailing NUL bytes)


@dataclass
class Inputs:
    """Images to extract, in order: what messages and results call each one, and where its pixels come from.

    Parameters
    ----------
    names : list of str
        A path as given, or ``<array i>``, ``<image i>``, ``<bytes i>``.
    sources : list of Path, bytes, ndarray or PIL.Image.Image
        One per name.
    labels : ndarray of shape (n,), int64, or None, default=None
        Class index per image, when the input form carries labels.
    class_names : list of str or None, default=None
        The class names that ``labels`` index.

    Examples
    --------
    >>> inputs = read_inputs([b"first image file", b"second"])
    >>> inputs.names, len(inputs)
    (['<bytes 0>', '<bytes 1>'], 2)
    """

    names: list[str]
    sources: list[Source]
    labels: np.ndarray | None = None
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.names)


def read_inputs(inputs: Any) -> Inputs:
    """Name every image of any accepted input form, with labels when the form has them.

    Parameters
    ----------
    inputs : object
        One of:

        - a folder (one subfolder per class gives labels), a CSV of ``path[,label]`` rows,
          or a single image file (one image), as str or Path;
        - a :class:`~cnncodes.Dataset`;
        - a list or tuple of image files and folders (kept in order, duplicates too, when
          there are no folders; a missing file becomes a per-image failure later);
        - a 1-D pandas Series, a one-column pandas DataFrame (what scikit-learn's
          ``ColumnTransformer`` hands a transformer given ``["path"]``), an (n, 1) or (n,)
          numpy array of objects or strings: one image per row;
        - encoded image files as ``bytes``, one object each (or a list of them);
        - an (N, H, W, 3) uint8 array, or a list of H x W x 3 uint8 arrays or PIL images.

    Returns
    -------
    Inputs

    Raises
    ------
    InputError
        For a missing folder or file, a malformed CSV, a DataFrame of several columns, or
        a form not listed here.

    Examples
    --------
    >>> read_inputs(np.zeros((2, 8, 8, 3), np.uint8)).names
    ['<array 0>', '<array 1>']
    >>> read_inputs(np.array([["a.jpg"], ["b.jpg"]], dtype=object)).sources
    [PosixPath('a.jpg'), PosixPath('b.jpg')]
    >>> read_inputs([1.5, "a.jpg"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: inputs: expected paths, a folder, a CSV, ... or PIL images; got float, str
    """
    if isinstance(inputs, Inputs):
        return inputs
    if isinstance(inputs, Dataset):
        return Inputs([display_name(p) for p in inputs.paths], list(inputs.paths), inputs.labels, inputs.class_names)
    if isinstance(inputs, (str, Path)):
        return read_inputs(load_dataset(inputs))
    if isinstance(inputs, bytes):
        return _of_list([inputs])
    if hasattr(inputs, "columns") and hasattr(inputs, "to_numpy"):  # a DataFrame (pandas is never imported)
        columns = list(inputs.columns)
        if len(columns) != 1:
            message = (
                f"inputs: expected one column of images, got a DataFrame with columns {', '.join(map(repr, columns))}"
            )
            raise InputError(message)
        inputs = inputs.to_numpy()
    elif hasattr(inputs, "to_numpy") and getattr(inputs, "ndim", None) == 1:  # a Series
        inputs = inputs.to_numpy()
    if isinstance(inputs, np.ndarray):
        return _of_array(inputs)
    try:
        return _of_list(list(inputs))
    except TypeError:
        message = f"inputs: expected {_EXPECTED}; got {type(inputs).__name__}"
        raise InputError(message) from None


def _of_array(array: np.ndarray) -> Inputs:
    if array.ndim == 4 and array.shape[-1] == 3 and array.dtype == np.uint8:
        return Inputs([f"<array {i}>" for i in range(len(array))], list(array))
    if array.dtype.kind in _TEXT_KINDS and (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
        return _of_list(array.reshape(-1).tolist())
    message = f"<array>: expected N x H x W x 3 uint8 images, got shape {array.shape} and dtype {array.dtype}"
    raise InputError(message)


def _of_list(items: list[Any]) -> Inputs:
    if items and all(isinstance(x, bytes) for x in items):
        return Inputs([f"<bytes {i}>" for i in range(len(items))], items)
    if items and all(isinstance(x, (np.ndarray, Image.Image)) for x in items):
        return Inputs([f"<image {i}>" for i in range(len(items))], items)
    if all(isinstance(x, (str, Path)) for x in items):
        if not any(Path(x).is_dir() for x in items):  # plain file list: keep order and duplicates, no check here
            return Inputs([display_name(x) for x in items], [Path(x) for x in items])
        return read_inputs(load_dataset(items))
    kinds = sorted({type(x).__name__ for x in items})
    message = f"inputs: expected {_EXPECTED}; got {', '.join(kinds)}"
    raise InputError(message)
