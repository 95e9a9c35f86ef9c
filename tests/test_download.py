"""Tests of downloads (and `cnncodes models fetch`) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnncodes.cli import cli
from cnncodes.download import download_file
from cnncodes.errors import DownloadError
from cnncodes.paths import cards_dir
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


def _url_card(tmp_path: Path, url: str, sha256: str) -> None:
    card = json.loads((cards_dir() / "resnet18.json").read_text())
    card.update(name="served_resnet", source="url", url=url, sha256=sha256, onnx_file="served_resnet.onnx")
    (tmp_path / "served_resnet.json").write_text(json.dumps(card))


def test_cli_models_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_onnx: Path) -> None:
    """Check that `cnncodes models fetch` downloads a card's ONNX file and `models` then shows it present."""
    data = tiny_onnx.read_bytes()
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(models))
    with LocalServer({"/served.onnx": data}) as server:
        _url_card(models, f"{server.url}/served.onnx", hashlib.sha256(data).hexdigest())
        result = CliRunner().invoke(cli, ["-q", "models", "fetch", "served_resnet"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout == f"served_resnet: {models / 'served_resnet.onnx'}\n"
    assert (models / "served_resnet.onnx").read_bytes() == data
    listing = json.loads(CliRunner().invoke(cli, ["models", "--json"]).stdout)
    assert next(row for row in listing if row["name"] == "served_resnet")["present"] is True


def test_cli_models_fetch_bad_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_onnx: Path) -> None:
    """Check that a bad checksum fails with exit code 1, one line, and no file."""
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(models))
    with LocalServer({"/served.onnx": tiny_onnx.read_bytes()}) as server:
        _url_card(models, f"{server.url}/served.onnx", "f" * 64)
        result = CliRunner().invoke(cli, ["-q", "models", "fetch", "served_resnet"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {server.url}/served.onnx: sha256 mismatch (expected {'f' * 64}, got ")
    assert result.stderr.endswith("; nothing was saved\n") and result.stderr.count("\n") == 1
    assert not (models / "served_resnet.onnx").exists()
