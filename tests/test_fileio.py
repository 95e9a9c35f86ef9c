"""Tests of atomic file writes: all or nothing, and the finished file's mode follows the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cnncodes.fileio import atomic_path, write_text_atomic


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["022", "077", "002"])
def test_atomic_path_mode_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    """Check that a file written through a temporary file gets the mode an ordinary write would (not 0600)."""
    previous = os.umask(umask)
    try:
        written = write_text_atomic(tmp_path / "spec.json", "{}")
        ordinary = tmp_path / "ordinary.txt"
        ordinary.write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(written.stat().st_mode) == mode == stat.S_IMODE(ordinary.stat().st_mode)


def test_atomic_path_failure_leaves_nothing(tmp_path: Path) -> None:
    """Check that an error inside the block leaves neither the target nor a temporary file."""
    with pytest.raises(RuntimeError, match="stopped"):
        with atomic_path(tmp_path / "model.skops") as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []
