"""Atomic file writes: fill a temporary file beside the target, rename it into place when complete."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import CnnCodesError, OutputError

__all__ = [
    "atomic_path",
    "write_text_atomic",
    "write_refusal",
    "write_reason",
    "refuse_overwriting_an_input",
    "TEMP_PREFIX",
]

TEMP_PREFIX = ".tmp-"  # temporary files start with this, so readers and cleaners can skip them
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})  # the disk refuses bytes


@contextlib.contextmanager
def atomic_path(path: Path | str, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on any error remove it.

    A reader never sees half a file, a crash leaves at most a temporary file whose
    name starts with :data:`TEMP_PREFIX`, and several writers never touch the same file.

    Parameters
    ----------
    path : Path or str
        The file to write; its folder is created if missing.
    suffix : str, default=".tmp"
        Ending of the temporary name (writers that choose a format by ending need it).

    Yields
    ------
    Path
        Where to write.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "a.txt") as temporary:
    ...     _ = temporary.write_text("done")
    >>> sorted(p.name for p in folder.iterdir()), (folder / "a.txt").read_text()
    (['a.txt'], 'done')
    >>> (folder / "a.txt").unlink(); folder.rmdir()
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as error:
        raise _cannot_write(path, error) from error
    temporary = Path(name)
    try:
        # mkstemp makes the file 0600; the finished file follows the umask like any other written file.
        os.fchmod(handle, 0o666 & ~_umask())
    finally:
        os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError) and not isinstance(error, CnnCodesError) and error.errno in _WRITE_ERRNOS:
            raise _cannot_write(path, error) from error
        raise


def _cannot_write(path: Path, error: OSError) -> OutputError:
    """The one line of a file that could not be written: the disk's reason, not libhdf5's whole story."""
    reason = write_reason(error)
    return OutputError(f"{path}: cannot write ({reason}); nothing was written", reason)


def write_reason(error: BaseException) -> str:
    """The system's words for a failed write ("No space left on device"), found under wrapping errors.

    Examples
    --------
    >>> write_reason(OSError(errno.ENOSPC, "libhdf5's long story")), write_reason(ValueError("odd"))
    ('No space left on device', 'odd')
    """
    while isinstance(error.__cause__, BaseException) and not isinstance(error, OSError):
        error = error.__cause__
    if isinstance(error, OutputError):
        return error.reason
    return os.strerror(error.errno) if isinstance(error, OSError) and error.errno else str(error)


def write_refusal(folder: Path) -> OSError | None:
    """Why ``folder`` takes no new file now (read-only, missing and not creatable, full), or None if it does.

    A 4 KB file is written there and removed: a full disk refuses its bytes, not its name.

    Examples
    --------
    >>> write_refusal(Path("/proc/cnncodes")).strerror, write_refusal(Path(tempfile.gettempdir()))
    ('No such file or directory', None)
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}probe.", dir=folder)
        try:
            os.write(handle, bytes(4096))
        finally:
            os.close(handle)
            os.unlink(name)
    except OSError as error:
        return error
    return None


def _umask() -> int:
    """The process umask: from /proc on Linux, else by setting it and straight back (not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return ``path``.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_text_atomic(folder / "card.json", "{}").read_text()
    '{}'
    >>> (folder / "card.json").unlink(); folder.rmdir()
    """
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def refuse_overwriting_an_input(output: Path | str, inputs: Iterable[Any]) -> None:
    """Refuse to write ``output`` where one of this run's ``inputs`` (an image, a CSV, a codes file) is.

    Parameters
    ----------
    output : str or Path
        The file to be written.
    inputs : iterable
        What the run read: paths (anything else, an array, is passed over).

    Raises
    ------
    OutputError
        If ``output`` is the same file as one of ``inputs`` (also through a link); nothing is written.

    Examples
    --------
    >>> import tempfile
    >>> photo = Path(tempfile.mkdtemp()) / "a.jpg"
    >>> _ = photo.write_bytes(b"photo")
    >>> refuse_overwriting_an_input(photo, [photo])
    Traceback (most recent call last):
    ...
    cnncodes.errors.OutputError: ...a.jpg: is an input of this run; nothing was written (choose another output file)
    """
    try:
        target = os.stat(output)
    except (OSError, ValueError):
        return  # a new file (or one that cannot be looked at: writing it says why)
    for source in inputs:
        if not isinstance(source, (str, Path)):
            continue
        try:
            found = os.stat(source)
        except (OSError, ValueError):
            continue
        if os.path.samestat(found, target):
            message = f"{output}: is an input of this run; nothing was written (choose another output file)"
            raise OutputError(message, "it is an input of this run")
