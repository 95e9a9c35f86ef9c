"""Content keys of image files, memoized by file identity so that unchanged files are not read again.

The key of a file is always the sha256 of its bytes. Hashing a large image set on every run
costs more than reading its codes from the cache, so a small SQLite table in the cache folder
remembers (path, size, mtime_ns, inode, device) -> sha256, as git's index does: a file whose
identity changed in any way is hashed again.
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from pathlib import Path
from typing import Sequence

__all__ = ["FileKeyMemo"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS file_keys (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, device INTEGER, sha256 TEXT)"
_TIMEOUT_S = 30.0


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev


class FileKeyMemo:
    """A (path, size, mtime, inode) -> sha256 memo in ``path`` (an SQLite file).

    Any failure of the memo itself (a locked or read-only filesystem) disables it with one
    warning: keys are then computed from the bytes every time, which is always correct.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
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
        warnings.warn(f"{self.path}: file-key memo disabled ({error}); hashing every file", stacklevel=3)
        self._disabled = True
        self._connection = None

    def lookup(self, paths: Sequence[Path]) -> dict[int, str]:
        """Known keys of unchanged files, by position in ``paths``."""
        connection = self._connect()
        if connection is None or not paths:
            return {}
        found: dict[int, str] = {}
        try:
            absolute = [str(Path(p).absolute()) for p in paths]
            rows: dict[str, tuple[int, int, int, int, str]] = {}
            for start in range(0, len(absolute), 500):  # SQLite's variable limit
                chunk = absolute[start : start + 500]
                query = f"SELECT path, size, mtime_ns, inode, device, sha256 FROM file_keys WHERE path IN ({','.join('?' * len(chunk))})"
                rows.update({row[0]: row[1:] for row in connection.execute(query, chunk)})
        except sqlite3.Error as error:
            self._disable(error)
            return {}
        for index, path in enumerate(absolute):
            row = rows.get(path)
            if row is None:
                continue
            try:
                if _identity(os.stat(path)) == tuple(row[:4]):
                    found[index] = row[4]
            except OSError:
                continue
        return found

    def store(self, entries: Sequence[tuple[Path, os.stat_result, str]]) -> None:
        """Remember the keys of files hashed just now (with the stat taken before hashing)."""
        connection = self._connect()
        if connection is None or not entries:
            return
        try:
            with connection:
                connection.executemany(
                    "INSERT OR REPLACE INTO file_keys VALUES (?, ?, ?, ?, ?, ?)",
                    [(str(Path(p).absolute()), *_identity(stat), key) for p, stat, key in entries],
                )
        except sqlite3.Error as error:
            self._disable(error)

    def __getstate__(self) -> dict[str, object]:
        return {"path": self.path, "_connection": None, "_disabled": self._disabled}
