"""Content fingerprints: sha256 of bytes, files and arrays, and of feature-set specs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KEY_SCHEME_VERSION", "sha256_bytes", "sha256_file", "sha256_array", "spec_fingerprint", "canonical_json"]

KEY_SCHEME_VERSION = 1  # bump when what goes into a key changes meaning
_FILE_CHUNK_BYTES = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 (64 digits) of ``data``, e.g. a whole image file.

    >>> sha256_bytes(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in chunks: equal to :func:`sha256_bytes` of its content.

    Raises ``OSError`` if the file cannot be read.

    >>> import os, tempfile
    >>> handle, name = tempfile.mkstemp()
    >>> os.close(handle)
    >>> sha256_file(name) == sha256_bytes(b"")
    True
    >>> os.remove(name)
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_FILE_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """Hex sha256 of an array's bytes, shape and dtype, so a reshape is another key.

    Non-contiguous arrays hash as their contiguous copy.

    >>> pixels = np.zeros((2, 3), np.uint8)
    >>> sha256_array(pixels) == sha256_array(pixels.reshape(3, 2))
    False
    """
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def canonical_json(spec: dict[str, Any]) -> str:
    """JSON with sorted keys and no spaces: the same spec always gives the same text.

    Parameters
    ----------
    spec : dict
        JSON-serializable values.

    Returns
    -------
    str

    Examples
    --------
    >>> canonical_json({"b": [1, 2], "a": None})
    '{"a":null,"b":[1,2]}'
    """
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def spec_fingerprint(spec: dict[str, Any]) -> str:
    """sha256 of a feature-set spec's canonical JSON plus the key-scheme version.

    Parameters
    ----------
    spec : dict
        A feature-set spec (see :class:`cnncodes.featurespec.FeatureSetSpec`).

    Returns
    -------
    str
        64 hex digits; a cache folder is named by its first 20.

    Examples
    --------
    >>> spec_fingerprint({"b": 1, "a": 2}) == spec_fingerprint({"a": 2, "b": 1})
    True
    """
    return sha256_bytes(canonical_json({"key_scheme": KEY_SCHEME_VERSION, **spec}).encode())
