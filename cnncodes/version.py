"""The installed cnncodes version, from the package metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("cnncodes")
except PackageNotFoundError:  # running from a checkout without installing
    VERSION = "0.0.0"
