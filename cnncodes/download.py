"""Fetch a file by URL: progress, sha256 check, atomic rename into place."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from .errors import DownloadError

__all__ = ["download_file"]

_CHUNK_BYTES = 1 << 20


def _text_progress(done: int, total: int | None) -> None:
    if total:
        sys.stderr.write(f"\r  {done / 1e6:8.1f} / {total / 1e6:.1f} MB ({100 * done / total:5.1f}%)")
    else:
        sys.stderr.write(f"\r  {done / 1e6:8.1f} MB")
    sys.stderr.flush()


def download_file(
    url: str,
    path: Path,
    *,
    sha256: str | None = None,
    timeout_s: float = 60.0,
    progress: Callable[[int, int | None], None] | None = _text_progress,
) -> Path:
    """Download ``url`` to ``path``, checking its sha256, all or nothing.

    The bytes go to a temporary file beside ``path``, which is renamed into place
    only when the download is complete and its checksum matches; on any failure the
    temporary file is removed, so no partial file is ever left at ``path``.

    Parameters
    ----------
    url : str
        An http(s) or file URL.
    path : Path
        Destination file.
    sha256 : str or None, default=None
        Expected hex digest; None skips the check.
    timeout_s : float, default=60.0
        Socket timeout.
    progress : callable or None
        Called as ``progress(bytes_done, bytes_total_or_None)``; None for silence.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    DownloadError
        On a connection error, a short read or a checksum mismatch.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temporary_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            done = 0
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            if total is not None and done != total:
                message = f"{url}: connection closed after {done} of {total} bytes; nothing was saved"
                raise DownloadError(message)
        if progress:
            sys.stderr.write("\n")
        if sha256 and digest.hexdigest() != sha256.lower():
            message = f"{url}: sha256 mismatch (expected {sha256}, got {digest.hexdigest()}); nothing was saved"
            raise DownloadError(message)
        temporary.replace(path)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        if isinstance(error, DownloadError):
            raise
        reason = getattr(error, "reason", error)
        message = f"{url}: download failed ({reason}); nothing was saved"
        raise DownloadError(message) from error
    finally:
        temporary.unlink(missing_ok=True)
    return path
