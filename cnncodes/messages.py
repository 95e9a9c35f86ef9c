"""The wording of messages that many modules share: choices, suggestions, format versions, install hints."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path
from typing import Any, Iterable

__all__ = [
    "display_name",
    "parameter_subject",
    "one_of_message",
    "invalid_value_message",
    "did_you_mean",
    "newer_format_message",
    "install_hint",
    "not_regular_message",
]

_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(32), 127] if code != 9}  # tab is shown as it is


def parameter_subject(name: str, owner: str = "") -> str:
    """``The 'name' parameter``, or for an estimator ``The 'name' parameter of CNNCodes`` (scikit-learn's wording).

    Examples
    --------
    >>> parameter_subject("pooling", "CNNCodes")
    "The 'pooling' parameter of CNNCodes"
    """
    return f"The '{name}' parameter" + (f" of {owner}" if owner else "")


def one_of_message(name: str, allowed: Iterable[Any], got: Any, owner: str = "") -> str:
    """The "must be one of" message for a value outside a fixed set.

    Examples
    --------
    >>> one_of_message("device", ("auto", "cpu"), "gpu")
    "The 'device' parameter must be one of 'auto', 'cpu'. Got 'gpu' instead."
    """
    return f"{parameter_subject(name, owner)} must be one of {', '.join(map(repr, allowed))}. Got {got!r} instead."


def invalid_value_message(name: str, expected: str, got: Any, owner: str = "") -> str:
    """The message for a value of the wrong kind: expected versus got.

    Examples
    --------
    >>> invalid_value_message("grid", "a positive int or None", 0)
    "The 'grid' parameter must be a positive int or None. Got 0 instead."
    """
    return f"{parameter_subject(name, owner)} must be {expected}. Got {got!r} instead."


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest known name, or an empty string.

    Examples
    --------
    >>> did_you_mean("efficientnet_lit0", ["efficientnet_lite0", "resnet50"])
    " Did you mean 'efficientnet_lite0'?"
    >>> did_you_mean("zzz", ["resnet50"])
    ''
    """
    suggestion = difflib.get_close_matches(name, list(known), n=1)
    return f" Did you mean '{suggestion[0]}'?" if suggestion else ""


def newer_format_message(subject: object, what: str, version: int, supported: int) -> str:
    """The one wording of a file whose format version is newer than this cnncodes reads.

    Examples
    --------
    >>> newer_format_message("codes.h5", "cache", 2, 1)
    'codes.h5: cache format version 2 is newer than this cnncodes supports (1); upgrade cnncodes'
    """
    return (
        f"{subject}: {what} format version {version} is newer than this cnncodes supports ({supported}); "
        "upgrade cnncodes"
    )


def install_hint(extra: str) -> str:
    """How to install an optional extra.

    Examples
    --------
    >>> install_hint("dask")
    "pip install 'cnncodes[dask]'"
    """
    return f"pip install 'cnncodes[{extra}]'"


def not_regular_message(subject: object, mode: int, path: str | Path | None = None) -> str:
    """The one wording of an input that is not a regular file (``mode`` is its ``st_mode``).

    A folder at ``path`` that cannot be listed (permissions) says so: its images are missing from the run.

    Examples
    --------
    >>> import os
    >>> not_regular_message("photos", os.stat(".").st_mode)
    'photos: not a regular file (a folder)'
    """
    if stat.S_ISDIR(mode) and path is not None:
        try:
            os.scandir(path).close()
        except OSError as error:
            return f"{subject}: cannot list folder ({error.strerror or error})"
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")]
    kinds += [(stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]
    kind = next((name for test, name in kinds if test(mode)), "not a plain file")
    return f"{subject}: not a regular file ({kind})"


def display_name(path: str | Path) -> str:
    """What messages and codes files call a path (or a class folder): itself, with what cannot be shown escaped.

    A name that is not valid UTF-8 has its bytes escaped (``\\xff``), since terminals and HDF5
    strings take UTF-8 only, and control characters (a newline in a name) are escaped too, so a
    message stays one line. The file itself is still read by its real name.

    Parameters
    ----------
    path : str or Path
        As given, or as :func:`os.fsdecode` made it from the filesystem's bytes.

    Returns
    -------
    str
        Valid UTF-8.

    Examples
    --------
    >>> display_name(Path("photos/a.jpg"))
    'photos/a.jpg'
    >>> display_name(os.fsdecode(b"bad\\xff\\xfe.jpg"))
    'bad\\\\xff\\\\xfe.jpg'
    >>> display_name("two\\nlines.jpg")
    'two\\\\x0alines.jpg'
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = os.fsencode(text).decode("utf-8", "backslashreplace")
    return text.translate(_CONTROL_ESCAPES)
