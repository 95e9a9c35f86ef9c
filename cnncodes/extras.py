"""Optional extras (dask, torch, matplotlib): imported on first use, with the install hint when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError
from .messages import install_hint

__all__ = ["import_extra"]


def import_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that provides it.

    Parameters
    ----------
    module : str
        Module to import, e.g. ``"dask.distributed"``.
    extra : str
        The cnncodes extra that installs it, e.g. ``"dask"``.
    purpose : str
        What needs it, starting the message: ``"running on dask"``.

    Returns
    -------
    module

    Raises
    ------
    MissingExtraError
        Also an :class:`ImportError`, so ``except ImportError`` still catches it.

    Examples
    --------
    >>> import_extra("json", "none", "reading JSON").__name__
    'json'
    >>> import_extra("no_such_module_xyz", "plot", "plotting")
    Traceback (most recent call last):
    ...
    cnncodes.errors.MissingExtraError: plotting needs no_such_module_xyz (...); install it with: pip install ...
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        message = f"{purpose} needs {module} ({error}); install it with: {install_hint(extra)}"
        raise MissingExtraError(message, name=module) from error
