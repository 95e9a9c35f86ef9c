"""Content keys of images (sha256 of file bytes, encoded bytes or pixels) and the memo of file keys.

The key of a file is always the sha256 of its bytes, so the encoded bytes of a file get the
same key as the file. Hashing a large image set on every run costs more than reading its
codes from the cache, so a small SQLite table in the cache folder remembers
(path, size, mtime_ns, ctime_ns, inode, device) -> sha256, as git's index does: a file whose
identity changed in any way is hashed again. The ctime is there because tools restore the mtime
(``cp -p``, ``rsync -t``) but nothing can restore the ctime of a file rewritten in place. Paths
are stored as their bytes, so names that are not valid UTF-8 are remembered too.
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from stat import S_ISREG
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import ImageDecodeError
from .fingerprint import sha256_array, sha256_bytes, sha256_file
from .messages import not_regular_message

__all__ = ["FileKeyMemo", "content_key", "content_keys", "file_sha256"]

_TABLE = "file_keys_v2"  # v2: paths as bytes, and the ctime (the table of v1 is left unread)
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
    "ctime_ns INTEGER, inode INTEGER, device INTEGER, sha256 TEXT)"
)
_TIMEOUT_S = 30.0
_SQLITE_VARIABLES = 500  # stays under SQLite's limit of bound variables per query
_file_hashes: dict[tuple[str, int, int, int], str] = {}  # this process: (path, size, mtime_ns, ctime_ns) -> sha256


def _identity(stat: os.stat_result) -> tuple[int, int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev


def _path_key(path: str | Path) -> bytes:
    """The absolute path as the filesystem's bytes (a name that is not valid UTF-8 included)."""
    return os.fsencode(Path(path).absolute())


class FileKeyMemo:
    """A (path, size, mtime, ctime, inode, device) -> sha256 memo in an SQLite file.

    Any failure of the memo itself (a locked or read-only filesystem) disables it with one
    warning: keys are then computed from the bytes every time, which is always correct.

    Parameters
    ----------
    path : Path
        The SQLite file (created with its folder on first use).

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> image = folder / "a.jpg"
    >>> _ = image.write_bytes(b"pixels")
    >>> memo = FileKeyMemo(folder / "memo.sqlite")
    >>> memo.store([(image, os.stat(image), sha256_file(image))])
    >>> memo.lookup([image]) == {0: sha256_file(image)}
    True
    >>> memo.close(); shutil.rmtree(folder)
    """

    def __init__(self, path: Path, on_unwritable: Callable[[BaseException], bool] | None = None) -> None:
        self.path = path
        self.on_unwritable = on_unwritable  # asked first: True if it said the storage refuses writes
        self._connection: sqlite3.Connection | None = None
        self._disabled = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._connection is None and not self._disabled:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(self.path, timeout=_TIMEOUT_S, check_same_thread=False)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(_SCHEMA)
                self._connection = connection
            except (sqlite3.Error, OSError) as error:
                self._disable(error)
        return self._connection

    def _disable(self, error: Exception) -> None:
        if self.on_unwritable is None or not self.on_unwritable(error):
            warnings.warn(f"{self.path}: file-key memo disabled ({error}); hashing every file", stacklevel=3)
        self._disabled = True
        self._connection = None

    def lookup(self, paths: Sequence[Path]) -> dict[int, str]:
        """Known keys of the files that did not change since they were stored.

        Parameters
        ----------
        paths : sequence of Path
            Files to look up.

        Returns
        -------
        dict of int to str
            Key by position in ``paths``, for the unchanged files only.
        """
        connection = self._connect()
        if connection is None or not paths:
            return {}
        absolute = [_path_key(p) for p in paths]
        rows: dict[bytes, tuple[int, int, int, int, int, str]] = {}
        try:
            for start in range(0, len(absolute), _SQLITE_VARIABLES):
                chunk = absolute[start : start + _SQLITE_VARIABLES]
                query = (
                    f"SELECT path, size, mtime_ns, ctime_ns, inode, device, sha256 FROM {_TABLE} "
                    f"WHERE path IN ({','.join('?' * len(chunk))})"
                )
                rows.update({row[0]: row[1:] for row in connection.execute(query, chunk)})
        except sqlite3.Error as error:
            self._disable(error)
            return {}
        found: dict[int, str] = {}
        for index, path in enumerate(absolute):
            row = rows.get(path)
            if row is None:
                continue
            try:
                if _identity(os.stat(path)) == tuple(row[:5]):
                    found[index] = row[5]
            except OSError:
                continue
        return found

    def store(self, entries: Sequence[tuple[Path, os.stat_result, str]]) -> None:
        """Remember the keys of files hashed just now.

        Parameters
        ----------
        entries : sequence of (Path, os.stat_result, str)
            Each file with the stat taken *before* hashing it, and its key.
        """
        connection = self._connect()
        if connection is None or not entries:
            return
        try:
            with connection:
                connection.executemany(
                    f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(_path_key(p), *_identity(stat), key) for p, stat, key in entries],
                )
        except sqlite3.Error as error:
            self._disable(error)

    def close(self) -> None:
        """Close the SQLite connection (it reopens on the next use)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __getstate__(self) -> dict[str, object]:
        return {
            "path": self.path,
            "on_unwritable": self.on_unwritable,
            "_connection": None,
            "_disabled": self._disabled,
        }


def content_key(source: object) -> str:
    """The content key of one image: sha256 of a file's or encoded image's bytes, or of pixels.

    Parameters
    ----------
    source : str, Path, bytes, ndarray or PIL.Image.Image
        A file, the encoded bytes of one, or decoded pixels (arrays and Pillow images of the
        same pixels share a key).

    Returns
    -------
    str
        64 hex digits.

    Raises
    ------
    OSError
        If a file cannot be read.
    ImageDecodeError
        If a path is not a regular file (a FIFO would block the read).

    Examples
    --------
    >>> from PIL import Image
    >>> pixels = np.zeros((2, 2, 3), np.uint8)
    >>> content_key(pixels) == content_key(Image.fromarray(pixels))
    True
    >>> content_key(b"") == sha256_bytes(b"")
    True
    """
    return _key_and_stat(source)[0]


def _key_and_stat(source: object) -> tuple[str, os.stat_result | None]:
    """The content key, and for files the stat taken before reading (for the memo)."""
    if isinstance(source, (str, Path)):
        stat = os.stat(source)
        if not S_ISREG(stat.st_mode):  # reading a FIFO would wait for a writer; a folder has no bytes
            raise ImageDecodeError(not_regular_message(source, stat.st_mode, source))
        return sha256_file(source), stat
    if isinstance(source, bytes):
        return sha256_bytes(source), None
    return sha256_array(np.asarray(source)), None  # an array, or a Pillow image as its pixel array


def _safe_key(source: object, name: str) -> tuple[str, os.stat_result | None] | ImageDecodeError:
    try:
        return _key_and_stat(source)
    except ImageDecodeError as error:
        return ImageDecodeError(f"{name}: {str(error).removeprefix(f'{source}: ')}")
    except FileNotFoundError as error:
        if isinstance(source, (str, Path)) and os.path.islink(source):
            return ImageDecodeError(f"{name}: broken symbolic link (its target {os.readlink(source)!r} is missing)")
        return ImageDecodeError(f"{name}: cannot read file ({error.strerror or error})")
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        return ImageDecodeError(f"{name}: cannot read file ({getattr(error, 'strerror', None) or error})")


def content_keys(
    sources: Sequence[object], names: Sequence[str], *, memo: FileKeyMemo | None = None, n_workers: int = 1
) -> tuple[list[str | None], dict[int, ImageDecodeError]]:
    """Content keys of many images, hashed in threads; files unchanged since a previous run come from ``memo``.

    Parameters
    ----------
    sources : sequence
        Images as :func:`content_key` takes them.
    names : sequence of str
        What error messages call each image.
    memo : FileKeyMemo or None, default=None
        Remembers the keys of files between runs.
    n_workers : int, default=1
        Hashing threads.

    Returns
    -------
    keys : list of str or None
        One per source; None where the file could not be read.
    failures : dict of int to ImageDecodeError
        By position, the files that could not be read.

    Examples
    --------
    >>> keys, failures = content_keys([b"a", Path("missing.jpg")], ["<bytes 0>", "missing.jpg"])
    >>> keys[0] == sha256_bytes(b"a"), keys[1], str(failures[1])
    (True, None, 'missing.jpg: cannot read file (No such file or directory)')
    """
    keys: list[str | None] = [None] * len(sources)
    files = [i for i, source in enumerate(sources) if isinstance(source, (str, Path))]
    if memo is not None:
        for position, key in memo.lookup([Path(sources[i]) for i in files]).items():  # type: ignore[arg-type]
            keys[files[position]] = key
    todo = [i for i, key in enumerate(keys) if key is None]
    failures: dict[int, ImageDecodeError] = {}
    hashed: list[tuple[Path, os.stat_result, str]] = []
    with ThreadPoolExecutor(max(1, n_workers)) as pool:
        for index, outcome in zip(todo, pool.map(_safe_key, [sources[i] for i in todo], [names[i] for i in todo])):
            if isinstance(outcome, ImageDecodeError):
                failures[index] = outcome
                continue
            keys[index], stat = outcome
            if stat is not None:
                hashed.append((Path(sources[index]), stat, outcome[0]))  # type: ignore[arg-type]
    if memo is not None:
        memo.store(hashed)
    return keys, failures


def file_sha256(path: Path) -> str:
    """sha256 of a (large) file, remembered in this process while its size and mtime stay the same.

    Parameters
    ----------
    path : Path
        E.g. a model file, hashed once per process for every feature-set spec.

    Returns
    -------
    str
        64 hex digits.

    Examples
    --------
    >>> import os, tempfile
    >>> handle, name = tempfile.mkstemp()
    >>> os.close(handle)
    >>> file_sha256(Path(name)) == sha256_bytes(b"")
    True
    >>> os.remove(name)
    """
    stat = path.stat()
    identity = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if identity not in _file_hashes:
        _file_hashes[identity] = sha256_file(path)
    return _file_hashes[identity]
