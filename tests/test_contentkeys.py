"""Tests of the file-key memo: unchanged files are not re-read, changed files always are."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cnncodes.contentkeys import FileKeyMemo


def _entry(path: Path) -> tuple[Path, os.stat_result, str]:
    return path, os.stat(path), hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_key_memo_hits_unchanged_and_misses_changed(tmp_path: Path) -> None:
    """Check that an unchanged file is remembered and a rewritten one (new size or mtime) is not."""
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    memo = FileKeyMemo(tmp_path / "memo.sqlite")
    memo.store([_entry(a), _entry(b)])
    fresh = FileKeyMemo(tmp_path / "memo.sqlite")
    assert fresh.lookup([a, b]) == {0: _entry(a)[2], 1: _entry(b)[2]}
    b.write_bytes(b"changed!")
    assert fresh.lookup([a, b]) == {0: _entry(a)[2]}
    stat = os.stat(a)
    a.write_bytes(b"FIRST")  # same size: only mtime (and content) differ
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    assert fresh.lookup([a]) == {}


def test_file_key_memo_disables_itself_on_unusable_location(tmp_path: Path) -> None:
    """Check that a memo that cannot be opened warns once and answers nothing (keys are then hashed)."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    memo = FileKeyMemo(blocker / "memo.sqlite")
    with pytest.warns(UserWarning, match="file-key memo disabled"):
        assert memo.lookup([blocker]) == {}
    memo.store([_entry(blocker)])  # silently nothing: already disabled
