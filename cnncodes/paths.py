"""Where cnncodes keeps its files: the user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir"]


def default_cache_dir() -> Path:
    """``CNNCODES_CACHE`` if set, else the user cache folder (``$XDG_CACHE_HOME/cnncodes``)."""
    override = os.environ.get("CNNCODES_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnncodes"
