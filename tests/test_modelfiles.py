"""Tests of ready model files: built, fetched and exported into the models folder; layer and model tables."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from cnncodes.backbones import get_backbone
from cnncodes.errors import DownloadError, ModelFileError, UnknownBackboneError
from cnncodes.modelfiles import ensure_model_file, export_model, fetch_model, list_layers, list_models, resolve_backbone
from cnncodes.paths import cards_dir
from tests.httpserver import LocalServer


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty models folder of this test alone."""
    folder = tmp_path / "models"
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(folder))
    return folder


def _url_card(models: Path, url: str, sha256: str) -> None:
    """A card in the models folder for a ready ONNX file served at ``url``."""
    card = json.loads((cards_dir() / "resnet18.json").read_text())
    card.update(name="served", source="url", url=url, sha256=sha256, onnx_file="served.onnx")
    models.mkdir(exist_ok=True)
    (models / "served.json").write_text(json.dumps(card))


def test_ensure_model_file_builds_lite_into_models_dir(models: Path) -> None:
    """Check that a Lite backbone is built once into the models folder, with no temporary file left."""
    spec = get_backbone("efficientnet_lite0")
    assert not spec.is_present()
    path = ensure_model_file(spec)
    assert path == models / "efficientnet_lite0.onnx" and spec.is_present()
    assert [p.name for p in models.iterdir()] == ["efficientnet_lite0.onnx"]
    built = path.stat().st_mtime_ns
    assert ensure_model_file(spec) == path and path.stat().st_mtime_ns == built  # not built again
    assert not list(cards_dir().glob("*.onnx"))


def test_ensure_model_file_torchvision_not_exported(models: Path) -> None:
    """Check that a torchvision backbone that was never exported is a one-line error naming the command."""
    expected = (
        f"resnet18: {models / 'resnet18.onnx'} is missing; run 'cnncodes export resnet18' "
        "(needs: pip install 'cnncodes[export]')"
    )
    with pytest.raises(ModelFileError, match=re.escape(expected)):
        ensure_model_file(get_backbone("resnet18"))


def test_ensure_model_file_refuses_a_changed_url_file(models: Path) -> None:
    """Check that a URL card's file whose sha256 differs from the card is refused with the remedy."""
    _url_card(models, "http://127.0.0.1:9/served.onnx", "0" * 64)
    (models / "served.onnx").write_bytes(b"not the published file")
    expected = (
        f"{models / 'served.onnx'}: sha256 differs from its model card; "
        "delete it and run 'cnncodes models fetch served'"
    )
    with pytest.raises(ModelFileError, match=re.escape(expected)):
        ensure_model_file(get_backbone("served"))


def test_url_card_file_fetched_on_first_use_or_on_request(models: Path, tiny_onnx: Path) -> None:
    """Check that a URL card's file is fetched on first use and by fetch_model, as the served bytes, then used as is."""
    data = tiny_onnx.read_bytes()
    with LocalServer({"/served.onnx": data}) as server:
        _url_card(models, f"{server.url}/served.onnx", hashlib.sha256(data).hexdigest())
        path = ensure_model_file(get_backbone("served"))
        assert path == models / "served.onnx" and path.read_bytes() == data
        path.unlink()
        assert fetch_model("served", progress=False) == path
    assert path.read_bytes() == data
    assert sorted(p.name for p in models.iterdir()) == ["served.json", "served.onnx", "served.onnx.source"]
    assert ensure_model_file(get_backbone("served")) == path  # the server is gone: no second download
    assert next(row for row in list_models() if row.name == "served").present


def test_fetch_model_bad_checksum_leaves_no_file(models: Path, tiny_onnx: Path) -> None:
    """Check that a checksum mismatch is one line naming the URL and leaves only the card in the models folder."""
    data = tiny_onnx.read_bytes()
    with LocalServer({"/served.onnx": data}) as server:
        url = f"{server.url}/served.onnx"
        _url_card(models, url, "f" * 64)
        expected = f"{url}: sha256 mismatch (expected {'f' * 64}, got {hashlib.sha256(data).hexdigest()}); nothing"
        with pytest.raises(DownloadError, match=re.escape(expected)):
            fetch_model("served", progress=False)
    assert [p.name for p in models.iterdir()] == ["served.json"]


def test_fetch_model_needs_a_url_card(models: Path) -> None:
    """Check that fetching a backbone without a ready ONNX URL is a one-line error naming its source."""
    with pytest.raises(
        ModelFileError,
        match=re.escape("efficientnet_lite0: its card gives no ONNX file to download (source 'pypi-lite')"),
    ):
        fetch_model("efficientnet_lite0")


def test_resolve_backbone_onnx_file(tiny_onnx: Path) -> None:
    """Check that any ONNX file becomes an ad-hoc backbone: its input, one tap per tensor, the last one by default."""
    spec = resolve_backbone(tiny_onnx)
    assert (spec.source, spec.input_name, spec.input_size) == ("file", "images", 32)
    assert spec.tap_names == ["conv1", "relu1", "conv2", "gap", "vector"]
    assert spec.default_tap == "vector"
    assert (spec.get_tap("conv1").channels, spec.get_tap("conv1").size) == (4, 16)
    assert ensure_model_file(spec) == tiny_onnx.resolve()


def test_resolve_backbone_unknown_name() -> None:
    """Check that a name that is neither a zoo backbone nor an ONNX file gets the zoo's suggestion."""
    expected = "Unknown backbone 'resnet19'. Did you mean 'resnet18'? Run 'cnncodes models' to list them."
    with pytest.raises(UnknownBackboneError, match=re.escape(expected)):
        resolve_backbone("resnet19")


def test_list_layers_of_a_zoo_name_needs_no_model_file(models: Path) -> None:
    """Check that a zoo backbone's layers are its card's taps, listed without building the model."""
    rows = list_layers("efficientnet_lite0")
    spec = get_backbone("efficientnet_lite0")
    assert [row.name for row in rows] == spec.tap_names
    stage4 = next(row for row in rows if row.name == "stage4")
    assert stage4.as_dict() == {
        "name": "stage4",
        "tensor": "stage4",
        "channels": 80,
        "size": 14,
        "stride": 16,
        "non_negative": False,
        "relu": True,
        "shape": None,
    }
    assert not models.exists()


def test_list_layers_of_an_onnx_file(tiny_onnx: Path) -> None:
    """Check that an ONNX file's layers are its float tensors with inferred shapes."""
    rows = {row.name: row for row in list_layers(tiny_onnx)}
    assert list(rows) == ["conv1", "relu1", "conv2", "gap", "vector"]
    assert (rows["conv2"].shape, rows["conv2"].channels, rows["conv2"].size) == (("N", 6, 8, 8), 6, 8)
    assert (rows["vector"].shape, rows["vector"].size, rows["vector"].non_negative) == (("N", 6), None, None)


def test_list_models_lists_every_card_and_models_dir_overrides(models: Path) -> None:
    """Check that the model table has one row per card, paths in the models folder, and a card there wins."""
    models.mkdir()
    card = json.loads((cards_dir() / "resnet18.json").read_text())
    card.update(license="my terms", onnx_file="my_resnet18.onnx")
    (models / "resnet18.json").write_text(json.dumps(card))
    rows = {row.name: row for row in list_models()}
    assert set(rows) == {path.stem for path in cards_dir().glob("*.json")}
    assert all(Path(row.path).parent == models and not row.present for row in rows.values())
    assert (rows["resnet18"].license, rows["resnet18"].path) == ("my terms", str(models / "my_resnet18.onnx"))
    assert rows["efficientnet_lite0"].taps["penultimate"] == 1280


def test_export_model_weights_with_wrong_hash_leave_nothing(models: Path) -> None:
    """Check that weights whose content does not match the sha256 prefix in their name are refused and not kept."""
    with LocalServer({"/resnet18-deadbeef.pth": b"not these weights"}) as server:
        url = f"{server.url}/resnet18-deadbeef.pth"
        digest = hashlib.sha256(b"not these weights").hexdigest()
        expected = f"{url}: sha256 mismatch (expected deadbeef, got {digest}); nothing was saved"
        with pytest.raises(DownloadError, match=re.escape(expected)):
            export_model("resnet18", weights=url)
    assert [p for p in (models / "weights").rglob("*") if p.is_file()] == []


def test_export_model_card_joins_the_zoo(models: Path, tmp_path: Path) -> None:
    """Check that an export writes its card beside the ONNX file, so in the models folder it is a present backbone."""
    path, card = export_model("mobilenet_v2", weights="random")
    assert sorted(p.name for p in models.iterdir()) == ["mobilenet_v2.json", "mobilenet_v2.onnx"]
    assert json.loads((models / "mobilenet_v2.json").read_text()) == card
    assert ensure_model_file(get_backbone("mobilenet_v2")) == path
    other, other_card = export_model("mobilenet_v2", weights="random", path=tmp_path / "elsewhere" / "mine.onnx")
    assert other_card["onnx_file"] == "mine.onnx"
    assert sorted(p.name for p in other.parent.iterdir()) == ["mine.json", "mine.onnx"]


@pytest.mark.parametrize("onnx_file", ["../../escaped.onnx", "/tmp/absolute.onnx", "sub/dir.onnx", "..", ""], ids=str)
def test_card_onnx_file_must_be_a_plain_name(models: Path, onnx_file: str) -> None:
    """Check that a card whose onnx_file could point outside the models folder is refused, naming the card."""
    _url_card(models, "http://127.0.0.1:9/served.onnx", "0" * 64)
    card = json.loads((models / "served.json").read_text())
    (models / "served.json").write_text(json.dumps({**card, "onnx_file": onnx_file}))
    expected = f"{models / 'served.json'}: onnx_file {onnx_file!r} must be a plain file name inside the models folder"
    with pytest.raises(ModelFileError, match=re.escape(expected)):
        fetch_model("served", progress=False)
    assert sorted(p.name for p in models.parent.iterdir()) == ["models"]  # nothing written beside it


def test_url_without_checksum_is_unverified_and_cached_by_url(
    models: Path, tiny_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Check that a card without sha256 warns that the download is unverified, and a file of the same name fetched
    from another URL is fetched again, not served."""
    data = tiny_onnx.read_bytes()
    with LocalServer({"/a/served.onnx": data, "/b/served.onnx": data + b"\0"}) as server:
        _url_card(models, f"{server.url}/a/served.onnx", "")
        with caplog.at_level("WARNING", logger="cnncodes"):
            path = fetch_model("served", progress=False)
        expected = f"served: no sha256 given for {server.url}/a/served.onnx; the download is unverified"
        assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [expected]
        assert ensure_model_file(get_backbone("served")) == path and path.read_bytes() == data
        _url_card(models, f"{server.url}/b/served.onnx", "")  # same file name, another URL
        assert ensure_model_file(get_backbone("served")).read_bytes() == data + b"\0"


def test_weights_downloads_are_cached_by_url(models: Path) -> None:
    """Check that two weight URLs ending in the same file name are two cached files, each its own bytes."""
    from cnncodes.modelfiles import _weights_file

    with LocalServer({"/a/w.pth": b"first", "/b/w.pth": b"second"}) as server:
        first = _weights_file("resnet18", f"{server.url}/a/w.pth")
        second = _weights_file("resnet18", f"{server.url}/b/w.pth")
    assert first != second and (first.read_bytes(), second.read_bytes()) == (b"first", b"second")
    assert first.parent.parent == second.parent.parent == models / "weights"
