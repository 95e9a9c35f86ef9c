"""Tests of downloads (and `cnncodes models fetch`) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from cnncodes.download import download_file
from cnncodes.errors import DownloadError
from tests.httpserver import LocalServer

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def test_download_file_checks_sha256_and_renames(tmp_path: Path) -> None:
    """Check that a good download lands complete, with no temporary file left."""
    with LocalServer({"/model.onnx": PAYLOAD}) as server:
        path = download_file(
            f"{server.url}/model.onnx",
            tmp_path / "model.onnx",
            sha256=hashlib.sha256(PAYLOAD).hexdigest(),
            progress=False,
        )
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_download_file_accepts_a_sha256_prefix(tmp_path: Path) -> None:
    """Check that a hex prefix of the digest (as in torchvision's file names) is checked, and a wrong one refused."""
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    with LocalServer({"/w-abc.pth": PAYLOAD}) as server:
        url = f"{server.url}/w-abc.pth"
        assert download_file(url, tmp_path / "good.pth", sha256=digest[:8], progress=False).read_bytes() == PAYLOAD
        expected = f"{url}: sha256 mismatch (expected 00000000, got {digest}); nothing was saved"
        with pytest.raises(DownloadError, match=re.escape(expected)):
            download_file(url, tmp_path / "bad.pth", sha256="00000000", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pth"]


@pytest.mark.parametrize("progress", [True, False], ids=["shown", "silent"])
def test_download_file_progress_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], progress: bool
) -> None:
    """Check that progress=True draws a progress line on stderr and progress=False writes nothing."""
    with LocalServer({"/model.onnx": PAYLOAD}) as server:
        download_file(f"{server.url}/model.onnx", tmp_path / "model.onnx", progress=progress)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ("100%" in captured.err) is progress


def test_download_file_wrong_checksum_leaves_nothing(tmp_path: Path) -> None:
    """Check that a checksum mismatch is one line and leaves no file behind."""
    with LocalServer({"/model.onnx": PAYLOAD}) as server:
        url = f"{server.url}/model.onnx"
        got = hashlib.sha256(PAYLOAD).hexdigest()
        expected = f"{url}: sha256 mismatch (expected {'0' * 64}, got {got}); nothing was saved"
        with pytest.raises(DownloadError, match=re.escape(expected)):
            download_file(url, tmp_path / "model.onnx", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_file_broken_connection_leaves_nothing(tmp_path: Path) -> None:
    """Check that a connection closed mid-file is one line and leaves no file behind."""
    with LocalServer({"/broken/model.onnx": PAYLOAD}) as server:
        url = f"{server.url}/broken/model.onnx"
        with pytest.raises(DownloadError, match=re.escape(f"{url}: ") + r".*nothing was saved$"):
            download_file(url, tmp_path / "model.onnx", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_file_not_found(tmp_path: Path) -> None:
    """Check that an HTTP error is one line naming the URL."""
    with LocalServer({}) as server:
        url = f"{server.url}/missing.onnx"
        with pytest.raises(DownloadError, match=re.escape(f"{url}: download failed (Not Found); nothing was saved")):
            download_file(url, tmp_path / "x.onnx", progress=False)
