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
    memo.store([(a, os.stat(a), "f" * 64)])  # an unchanged file's key comes from the memo, not from its bytes
    assert content_keys([a], ["a"], memo=memo)[0] == ["f" * 64]
    assert content_keys([a], ["a"])[0] == [hashlib.sha256(b"first").hexdigest()]  # without a memo: the bytes


def test_file_rewritten_in_place_with_restored_mtime_is_hashed_again(tmp_path: Path) -> None:
    """Check that a file rewritten with the same size and its mtime restored (cp -p, rsync -t) gets its new key.

    The ctime cannot be restored, and the memo keys on it.
    """
    a = tmp_path / "a.jpg"
    a.write_bytes(b"first")
    memo = FileKeyMemo(tmp_path / "memo.sqlite")
    assert content_keys([a], ["a"], memo=memo)[0] == [hashlib.sha256(b"first").hexdigest()]
    stat = os.stat(a)
    a.write_bytes(b"FIRST")
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (os.stat(a).st_size, os.stat(a).st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert content_keys([a], ["a"], memo=memo)[0] == [hashlib.sha256(b"FIRST").hexdigest()]
    assert FileKeyMemo(tmp_path / "memo.sqlite").lookup([a]) == {0: hashlib.sha256(b"FIRST").hexdigest()}


def test_names_that_are_not_utf8_are_keyed_and_remembered(tmp_path: Path) -> None:
    """Check that a file named by bytes that are not valid UTF-8 gets its key and is remembered by the memo."""
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/bad\xff\xfe.jpg"))
    path.write_bytes(b"pixels")
    memo = FileKeyMemo(tmp_path / "memo.sqlite")
    keys, failures = content_keys([path], ["bad"], memo=memo)
    assert (keys, failures) == ([hashlib.sha256(b"pixels").hexdigest()], {})
    assert FileKeyMemo(tmp_path / "memo.sqlite").lookup([path]) == {0: keys[0]}


def test_fifos_folders_and_broken_links_fail_alone_without_blocking(tmp_path: Path) -> None:
    """Check that a FIFO is refused from its stat (never opened: reading it would wait for a writer), as a folder,
    a broken symlink, a symlink loop and a NUL byte in the name are, each as its own one-line failure."""
    good, fifo, broken, loop = (
        tmp_path / "good.jpg",
        tmp_path / "pipe.jpg",
        tmp_path / "gone.jpg",
        tmp_path / "loop.jpg",
    )
    good.write_bytes(b"good")
    os.mkfifo(fifo)
    broken.symlink_to(tmp_path / "missing.jpg")
    loop.symlink_to(loop)
    sources = [good, fifo, tmp_path, broken, loop, Path("nul\0.jpg")]
    keys, failures = content_keys(sources, ["good", "pipe", "dir", "gone", "loop", "nul"], n_workers=2)
    assert keys[0] == hashlib.sha256(b"good").hexdigest() and keys[1:] == [None] * 5
    assert {i: str(e) for i, e in failures.items()} == {
        1: "pipe: not a regular file (a FIFO)",
        2: "dir: not a regular file (a folder)",
        3: f"gone: broken symbolic link (its target '{tmp_path / 'missing.jpg'}' is missing)",
        4: "loop: cannot read file (Too many levels of symbolic links)",
        5: "nul: cannot read file (embedded null byte)",
    }


def test_file_sha256_rehashes_a_changed_file(tmp_path: Path) -> None:
    """Check that the in-process model hash follows a file rewritten with another size."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"one")
    assert file_sha256(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"three")
    assert file_sha256(path) == hashlib.sha256(b"three").hexdigest()
