"""Fetch a file by URL, all or nothing: progress line, sha256 check, atomic rename into place."""

from __future__ import annotations

import hashlib
import http.client
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .errors import DownloadError
from .fileio import atomic_path

__all__ = ["download_file"]

_CHUNK_BYTES = 1 << 20


def download_file(
    url: str,
    path: Path | str,
    *,
    sha256: str | None = None,
    timeout_s: float = 60.0,
    progress: bool | None = None,
) -> Path:
    """Download ``url`` to ``path``, checking its sha256, all or nothing.

    The bytes go to a temporary file beside ``path``, which is renamed into place
    only when the download is complete and its checksum matches; on any failure
    (connection, short read, checksum) the temporary file is removed, so no file is
    left behind and nothing appears at ``path``.

    Parameters
    ----------
    url : str
        An http(s) or file URL.
    path : Path or str
        Destination file; its folder is created if missing.
    sha256 : str or None, default=None
        Expected hex digest, or its first hex digits (torchvision's weight files
        carry a prefix in their names); None skips the check.
    timeout_s : float, default=60.0
        Socket timeout.
    progress : bool or None, default=None
        A progress line on stderr; None shows it only when stderr is a terminal.

    Returns
    -------
    Path
        ``path``, complete and checked.

    Raises
    ------
    DownloadError
        On a connection error, a short read or a checksum mismatch.

    Examples
    --------
    >>> import tempfile; folder = Path(tempfile.mkdtemp())
    >>> (folder / "source.txt").write_text("hello")
    5
    >>> url, digest = (folder / "source.txt").as_uri(), hashlib.sha256(b"hello").hexdigest()
    >>> path = download_file(url, folder / "copy.txt", sha256=digest, progress=False)
    >>> path.read_text(), sorted(p.name for p in folder.iterdir())
    ('hello', ['copy.txt', 'source.txt'])
    >>> download_file(url, folder / "bad.txt", sha256="0" * 64, progress=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnncodes.errors.DownloadError: file://...: sha256 mismatch (expected 000..., got 2cf24dba...); nothing was saved
    >>> sorted(p.name for p in folder.iterdir())
    ['copy.txt', 'source.txt']
    >>> import shutil; shutil.rmtree(folder)
    """
    try:
        with atomic_path(path, suffix=".part") as temporary:
            digest = _fetch(url, temporary, timeout_s, sys.stderr.isatty() if progress is None else progress)
            if sha256 and not digest.startswith(sha256.lower()):
                message = f"{url}: sha256 mismatch (expected {sha256}, got {digest}); nothing was saved"
                raise DownloadError(message)
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        message = f"{url}: download failed ({reason}); nothing was saved"
        raise DownloadError(message) from error
    return Path(path)


def _fetch(url: str, path: Path, timeout_s: float, show: bool) -> str:
    """Stream ``url`` into ``path``; return the sha256 hex digest of what arrived."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(path, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length else None
        done = 0
        with tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, disable=not show) as bar:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                bar.update(len(chunk))
        if total is not None and done != total:
            message = f"{url}: connection closed after {done} of {total} bytes; nothing was saved"
            raise DownloadError(message)
    return digest.hexdigest()
