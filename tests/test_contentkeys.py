"""Tests of the file-key memo: unchanged files are not re-read, changed files always are."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncodes.contentkeys import FileKeyMemo, content_key, content_keys, file_sha256


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


def test_content_key_of_bytes_equals_the_file(tmp_path: Path) -> None:
    """Check that a file and its encoded bytes share a key, and pixels as an array or a PIL image share another."""
    path = tmp_path / "a.png"
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    Image.fromarray(pixels).save(path)
    assert content_key(path) == content_key(str(path)) == content_key(path.read_bytes()) == _entry(path)[2]
    assert content_key(pixels) == content_key(Image.fromarray(pixels)) != content_key(path)
    assert content_key(pixels) != content_key(pixels.reshape(4, 2, 3))  # same bytes, other shape


def test_content_keys_use_the_memo_and_report_unreadable_files(tmp_path: Path) -> None:
    """Check that keys of unchanged files come from the memo (not the bytes), and a missing file is a named failure."""
    a, missing = tmp_path / "a.jpg", tmp_path / "missing.jpg"
    a.write_bytes(b"first")
    memo = FileKeyMemo(tmp_path / "memo.sqlite")
    keys, failures = content_keys([a, b"bytes", missing], ["a", "<bytes 1>", "missing"], memo=memo, n_workers=2)
    assert keys == [_entry(a)[2], hashlib.sha256(b"bytes").hexdigest(), None]
    assert {i: str(e) for i, e in failures.items()} == {2: "missing: cannot read file (No such file or directory)"}
    stat = os.stat(a)
    a.write_bytes(b"FIRST")  # same size and, restored below, same mtime: only the memo still knows the old key
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert content_keys([a], ["a"], memo=memo)[0] == [hashlib.sha256(b"first").hexdigest()]
    assert content_keys([a], ["a"])[0] == [hashlib.sha256(b"FIRST").hexdigest()]  # without a memo: the bytes


def test_file_sha256_rehashes_a_changed_file(tmp_path: Path) -> None:
    """Check that the in-process model hash follows a file rewritten with another size."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"one")
    assert file_sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"three")
    assert file_sha256(path) == hashlib.sha256(b"three").hexdigest()
