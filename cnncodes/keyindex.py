"""The key index of one feature set: an SQLite file mapping each key to the shard and row that hold its code.

The shards stay the truth; the index only says where to look, so a lookup of N keys costs
N B-tree probes (O(N log M)) and touches no shard. Rules that keep it consistent:

- A writer renames its shard into place first and indexes it afterwards, so the index never
  names a shard that does not exist; a crash in between leaves a shard the index lacks.
- :meth:`KeyIndex.sync` finds such shards (and those of older cnncodes versions, which write
  no index) by comparing the shard folder with the index. It lists the folder only when the
  folder's mtime differs from the one recorded at the last complete sync, so a quiet cache
  costs one ``stat``. A missing index is the case where every shard is new: it is rebuilt.
- A shard that disappeared without being retired (deleted by hand, or by an older
  ``compact``) makes the next sync rebuild the index from the shards.
- Rollback-journal mode (not WAL), so several processes, also on several hosts of a shared
  filesystem with working POSIX locks, can use one index; writers hold the lock only for
  the few milliseconds of one insert.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from .fileio import TEMP_PREFIX

__all__ = ["KeyIndex", "IndexUnavailable", "ShardSummary", "INDEX_NAME", "shard_names"]

INDEX_NAME = "index.sqlite"
INDEX_VERSION = 1
RETIRED = "retired"  # the problem of a shard that compaction replaced (its file is about to go)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS shards (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, "
    "n_rows INTEGER NOT NULL, n_features INTEGER, problem TEXT)",
    "CREATE TABLE IF NOT EXISTS keys (key PRIMARY KEY, shard INTEGER NOT NULL, row INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
)
_TIMEOUT_S = 120.0  # a compaction holds the write lock while it repoints every key
_RACY_NS = 2_000_000_000  # a folder changed this recently may change again within the same mtime tick
_BATCH_ROWS = 200_000  # keys per transaction while indexing many shards
_CACHE_KIB = 32768  # SQLite's page cache per connection, filled only by the pages a process touches
_VARIABLES = 500  # bound variables per query, under SQLite's limit
_HEX_KEY = re.compile(rb"[0-9a-f]{64}")

ShardSummary = tuple[np.ndarray, int]  # (keys as S64, code width) of a readable shard
_T = TypeVar("_T")


class IndexUnavailable(Exception):
    """The index cannot be used here (read-only or lock-less filesystem, damaged file): scan the shards instead."""


def shard_names(shards_dir: Path) -> list[str]:
    """Names of the committed shards in ``shards_dir``, sorted (oldest first: names start with a timestamp).

    Examples
    --------
    >>> shard_names(Path("no-such-folder"))
    []
    """
    try:
        names = os.listdir(shards_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.endswith(".h5") and not n.startswith(TEMP_PREFIX))


def _stored(key: bytes) -> bytes | str:
    """Sha256 hex keys as their 32 bytes (half the index), other keys as text (never equal to a blob)."""
    return bytes.fromhex(key.decode()) if _HEX_KEY.fullmatch(key) else key.decode()


_NIBBLES = np.full(256, 255, np.uint8)  # hex digit -> its value; 255 for every other byte (upper case included)
_NIBBLES[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def _stored_many(keys: np.ndarray) -> list[bytes | str]:
    """:func:`_stored` of every key of an S64 array, hex decoding done by numpy."""
    digits = _NIBBLES[np.frombuffer(np.ascontiguousarray(keys, "S64").tobytes(), np.uint8).reshape(-1, 64)]
    hexes = (digits != 255).all(axis=1)
    packed = ((digits[:, 0::2] << 4) | digits[:, 1::2]).tobytes()
    return [packed[32 * i : 32 * i + 32] if hexes[i] else bytes(k).decode() for i, k in enumerate(keys)]


def _loaded(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


class KeyIndex:
    """Where each key's code is, for one feature set, kept in step with its shard folder.

    Parameters
    ----------
    path : Path
        The SQLite file (created on first use).
    shards_dir : Path
        The folder of the shards it indexes.
    summarize : callable
        Reads a shard's keys and code width: ``summarize(path) -> (keys, width)``; raises
        ``OSError`` (or a subclass) with a one-line reason for a shard that must not be served.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> index = KeyIndex(folder / INDEX_NAME, folder, lambda path: (np.array([b"k1"], "S64"), 3))
    >>> index.add_shard("a.h5", np.array([b"k1", b"k2"], "S64"), 3)
    >>> index.lookup(["k2", "k3"]), index.n_keys(), index.n_features
    ({'k2': ('a.h5', 1)}, 2, 3)
    >>> index.close(); shutil.rmtree(folder)
    """

    def __init__(self, path: Path, shards_dir: Path, summarize: Callable[[Path], ShardSummary]) -> None:
        self.path = path
        self.shards_dir = shards_dir
        self.summarize = summarize
        self._connection: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.RLock()  # threads of one process (dask tasks) share the connection, not transactions

    def __getstate__(self) -> dict[str, object]:
        return {key: value for key, value in self.__dict__.items() if key not in ("_connection", "_pid", "_lock")}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state, _connection=None, _pid=0, _lock=threading.RLock())

    def close(self) -> None:
        """Close the connection (reopened on next use)."""
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None or self._pid != os.getpid():  # a forked child needs its own connection
            try:
                connection = self._open()
            except sqlite3.OperationalError as error:  # locked, read-only, no locking on this filesystem
                raise IndexUnavailable(f"{self.path}: key index unavailable ({error})") from error
            except sqlite3.DatabaseError:  # not a database any more: the shards rebuild it
                self.path.unlink(missing_ok=True)
                try:
                    connection = self._open()
                except sqlite3.Error as error:
                    raise IndexUnavailable(f"{self.path}: key index unavailable ({error})") from error
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise sqlite3.OperationalError(str(error)) from error
        connection = sqlite3.connect(self.path, timeout=_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=DELETE")
            connection.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            if not connection.execute("SELECT name FROM sqlite_master WHERE name='meta'").fetchone():
                with _transaction(connection):
                    for statement in _SCHEMA:
                        connection.execute(statement)
                    connection.execute("INSERT OR IGNORE INTO meta VALUES ('index_version', ?)", (INDEX_VERSION,))
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    def _run(self, action: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            with self._lock:
                return action(self._db())
        except sqlite3.Error as error:
            raise IndexUnavailable(f"{self.path}: key index unavailable ({error})") from error

    # -- reading -------------------------------------------------------------
    def lookup(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        """(shard name, row) of each key the index holds; absent keys are left out.

        Parameters
        ----------
        keys : sequence of str
            Keys to find (duplicates allowed).

        Returns
        -------
        dict of str to (str, int)
        """
        wanted = sorted({_stored(k.encode()) for k in keys}, key=lambda v: (isinstance(v, str), v))

        def find(db: sqlite3.Connection) -> dict[str, tuple[str, int]]:
            found: dict[str, tuple[int, int]] = {}
            for start in range(0, len(wanted), _VARIABLES):
                chunk = wanted[start : start + _VARIABLES]
                query = f"SELECT key, shard, row FROM keys WHERE key IN ({','.join('?' * len(chunk))})"
                found.update({_loaded(k): (shard, row) for k, shard, row in db.execute(query, chunk)})
            ids = sorted({shard for shard, _ in found.values()})
            names: dict[int, str] = {}
            for start in range(0, len(ids), _VARIABLES):
                chunk = ids[start : start + _VARIABLES]
                query = f"SELECT id, name FROM shards WHERE id IN ({','.join('?' * len(chunk))})"
                names.update(db.execute(query, chunk).fetchall())
            return {key: (names[shard], row) for key, (shard, row) in found.items()}

        return self._run(find)

    def n_keys(self) -> int:
        """How many distinct keys the index holds (a count over the whole index)."""
        return int(self._run(lambda db: db.execute("SELECT COUNT(*) FROM keys").fetchone()[0]))

    @property
    def n_features(self) -> int | None:
        """The code width of the feature set: that of the first shard indexed."""
        row = self._run(lambda db: db.execute("SELECT value FROM meta WHERE name='n_features'").fetchone())
        return int(row[0]) if row else None

    def healthy_shards(self) -> list[str]:
        """Names of the indexed shards that may be served, oldest first."""
        rows = self._run(
            lambda db: db.execute("SELECT name FROM shards WHERE problem IS NULL ORDER BY name").fetchall()
        )
        return [name for (name,) in rows]

    def problems(self) -> dict[str, str]:
        """Shards the index refuses to serve, and why (retired ones excluded)."""
        query = "SELECT name, problem FROM shards WHERE problem IS NOT NULL AND problem != ?"
        return dict(self._run(lambda db: db.execute(query, (RETIRED,)).fetchall()))

    def iter_keys(self, chunk_rows: int = _BATCH_ROWS) -> Iterator[str]:
        """Every key the index holds, in index order, read in chunks."""
        last: bytes | str | None = None
        while True:
            if last is None:
                rows = self._run(
                    lambda db: db.execute("SELECT key FROM keys ORDER BY key LIMIT ?", (chunk_rows,)).fetchall()
                )
            else:
                query = "SELECT key FROM keys WHERE key > ? ORDER BY key LIMIT ?"
                rows = self._run(lambda db: db.execute(query, (last, chunk_rows)).fetchall())
            if not rows:
                return
            yield from (_loaded(k) for (k,) in rows)
            last = rows[-1][0]

    # -- keeping in step with the folder -------------------------------------
    def sync(self) -> dict[str, str]:
        """Index the shards that appeared since the last look; rebuild if an indexed shard disappeared.

        Returns
        -------
        dict of str to str
            The new shards refused (damaged, newer format, another width), and why.
        """
        try:
            folder_mtime = os.stat(self.shards_dir).st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._run(lambda db: db.execute("SELECT value FROM meta WHERE name='synced_mtime_ns'").fetchone()) == (
            folder_mtime,
        ):
            return {}
        names = shard_names(self.shards_dir)
        known = dict(self._run(lambda db: db.execute("SELECT name, problem FROM shards").fetchall()))
        listed = set(names)
        if any(problem is None and name not in listed for name, problem in known.items()):
            self._run(_clear)
            known = {}
        else:
            gone = [(name,) for name in known if name not in listed]
            if gone:
                self._run(lambda db: db.executemany("DELETE FROM shards WHERE name = ?", gone))
        new = [name for name in names if name not in known]
        self._index_new(new)
        if time.time_ns() - folder_mtime > _RACY_NS:  # else a rename within the same mtime tick could go unseen
            self._run(lambda db: _set_meta(db, "synced_mtime_ns", folder_mtime))
        return {name: problem for name, problem in self.problems().items() if name in set(new)}

    def _index_new(self, names: list[str]) -> None:
        """Read and index shards in batches of about ``_BATCH_ROWS`` keys per transaction."""
        batch: list[tuple[str, np.ndarray | None, int | None, str | None]] = []
        n_rows = 0
        for name in names:
            try:
                keys, width = self.summarize(self.shards_dir / name)
                batch.append((name, keys, width, None))
                n_rows += len(keys)
            except FileNotFoundError:  # compacted away since the listing
                continue
            except OSError as error:
                batch.append((name, None, None, str(error).splitlines()[0]))
            if n_rows >= _BATCH_ROWS:
                self._insert(batch)
                batch, n_rows = [], 0
        if batch:
            self._insert(batch)

    def add_shard(self, name: str, keys: np.ndarray, n_features: int) -> None:
        """Index a shard just renamed into place.

        Parameters
        ----------
        name : str
            Its file name in the shard folder.
        keys : ndarray of S64
            Its keys, by row.
        n_features : int
            Its code width.
        """
        self._insert([(name, keys, n_features, None)])

    def _insert(self, batch: Iterable[tuple[str, np.ndarray | None, int | None, str | None]]) -> None:
        def insert(db: sqlite3.Connection) -> None:
            with _transaction(db):
                width = db.execute("SELECT value FROM meta WHERE name='n_features'").fetchone()
                parts: list[tuple[np.ndarray, int]] = []
                for name, keys, n_features, problem in batch:
                    if keys is not None and width is not None and n_features != width[0]:
                        problem, keys = f"{n_features} features, but the feature set has {width[0]}", None
                    rows = len(keys) if keys is not None else 0
                    cursor = db.execute(
                        "INSERT OR IGNORE INTO shards (name, n_rows, n_features, problem) VALUES (?, ?, ?, ?)",
                        (name, rows, n_features, problem),
                    )
                    if cursor.rowcount == 0 or keys is None:  # another process indexed it first, or it is refused
                        continue
                    if width is None:
                        db.execute("INSERT INTO meta VALUES ('n_features', ?)", (n_features,))
                        width = (n_features,)
                    parts.append((keys, cursor.lastrowid))
                if not parts:
                    return
                # In key order the B-tree grows at few places; a stable sort keeps the first shard's copy of a key.
                keys = np.concatenate([k for k, _ in parts])
                shards = np.concatenate([np.full(len(k), shard) for k, shard in parts])
                rows = np.concatenate([np.arange(len(k)) for k, _ in parts])
                order = np.argsort(keys, kind="stable")
                stored = _stored_many(keys[order])
                db.executemany(
                    "INSERT OR IGNORE INTO keys VALUES (?, ?, ?)",
                    zip(stored, shards[order].tolist(), rows[order].tolist()),
                )

        self._run(insert)

    def clear(self) -> None:
        """Forget every shard; the next :meth:`sync` rebuilds the index from the shards."""
        self._run(_clear)

    def refuse(self, name: str, problem: str, keys: Sequence[str] | None = None) -> None:
        """Stop serving a shard found damaged: record why and drop the keys that point into it.

        Parameters
        ----------
        name : str
            The shard's file name.
        problem : str
            One line: what is wrong with it.
        keys : sequence of str or None, default=None
            Its keys if known (faster than scanning the whole index for them).
        """

        def refuse(db: sqlite3.Connection) -> None:
            with _transaction(db):
                found = db.execute("SELECT id FROM shards WHERE name = ?", (name,)).fetchone()
                if found is None:
                    return
                db.execute("UPDATE shards SET problem = ? WHERE id = ?", (problem, found[0]))
                if keys is None:
                    db.execute("DELETE FROM keys WHERE shard = ?", found)
                else:
                    stored = ((_stored(k.encode()), found[0]) for k in keys)
                    db.executemany("DELETE FROM keys WHERE key = ? AND shard = ?", stored)

        self._run(refuse)

    def replace(
        self, old: Sequence[str], new: str, keys: Iterable[np.ndarray], n_features: int, commit: Callable[[], None]
    ) -> bool:
        """Point every key at a merged shard instead of the shards ``old``, atomically.

        Parameters
        ----------
        old : sequence of str
            The shards merged (retired by this call; their files may then be deleted).
        new : str
            The merged shard's file name.
        keys : iterable of ndarray of S64
            The merged shard's keys, by row, in chunks.
        n_features : int
            Its code width.
        commit : callable
            Puts the merged shard in place (the rename); called under the write lock, so no
            reader indexes it before the keys point at it.

        Returns
        -------
        bool
            False if another process retired one of ``old`` first (nothing changed, ``commit`` not called).
        """

        def replace(db: sqlite3.Connection) -> bool:
            with _transaction(db):
                ids = []
                for name in old:
                    found = db.execute("SELECT id FROM shards WHERE name = ? AND problem IS NULL", (name,)).fetchone()
                    if found is None:
                        return False
                    ids.append(found[0])
                commit()
                cursor = db.execute("INSERT INTO shards (name, n_rows, n_features) VALUES (?, 0, ?)", (new, n_features))
                shard, row = cursor.lastrowid, 0
                for chunk in keys:
                    db.executemany(
                        "INSERT OR REPLACE INTO keys VALUES (?, ?, ?)",
                        ((stored, shard, row + i) for i, stored in enumerate(_stored_many(chunk))),
                    )
                    row += len(chunk)
                db.execute("UPDATE shards SET n_rows = ? WHERE id = ?", (row, shard))
                marks = ",".join("?" * len(ids))
                db.execute(f"DELETE FROM keys WHERE shard IN ({marks})", ids)
                db.execute(f"UPDATE shards SET problem = ? WHERE id IN ({marks})", [RETIRED, *ids])
            return True

        return bool(self._run(replace))


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): one writer at a time, readers never see half of it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _clear(db: sqlite3.Connection) -> None:
    """Forget every shard (the next indexing rebuilds the index from the shards)."""
    with _transaction(db):
        db.execute("DELETE FROM keys")
        db.execute("DELETE FROM shards")
        db.execute("DELETE FROM meta WHERE name IN ('n_features', 'synced_mtime_ns')")


def _set_meta(db: sqlite3.Connection, name: str, value: object) -> None:
    with _transaction(db):
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))
