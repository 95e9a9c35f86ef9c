"""Tests of the torchvision exporter: every model, random weights (no internet), ORT equal to torch."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cnncodes
from cnncodes.backbones import get_backbone
from cnncodes.cli import cli
from cnncodes.errors import MissingExtraError, UnknownBackboneError
from cnncodes.export import EXPORTABLE, export_torchvision, reference_outputs
from cnncodes.paths import cards_dir
from cnncodes.runtime import Session
from cnncodes.taps import prepare_model
from tests.httpserver import LocalServer


def _pixels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)


def _normalized(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    return ((pixels.astype(np.float32) - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(0, 3, 1, 2)


def _assert_ort_equals_torch(path: Path, name: str, weights: Path | None) -> None:
    spec = get_backbone(name)
    tensors = list(dict.fromkeys(tap.tensor for tap in spec.taps))
    session = Session(
        prepare_model(path, tensors, input_name="images", input_size=224, mean=spec.mean, std=spec.std), "cpu"
    )
    pixels = _pixels()
    ours = session.run(pixels)
    theirs = reference_outputs(name, weights, _normalized(pixels, spec.mean, spec.std))
    for tensor in tensors:
        scale = max(float(np.abs(theirs[tensor]).max()), 1.0)
        np.testing.assert_allclose(ours[tensor] / scale, theirs[tensor] / scale, atol=2e-4, err_msg=f"{name}:{tensor}")
    for tap in spec.taps:  # the card's non_negative flag decides whether ReLU is applied: it must be true
        assert (ours[tap.tensor].min() >= 0) or not tap.non_negative, f"{name}:{tap.name} has negative values"


@pytest.mark.parametrize("name", sorted(EXPORTABLE))
def test_export_random_weights_matches_card_and_torch(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Check that each exporter writes a valid graph whose taps and shapes are the card's, and ORT equals torch."""
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path))
    path, card = cnncodes.export_model(name, weights="random")
    assert path == tmp_path / f"{name}.onnx"
    shipped = json.loads((cards_dir() / f"{name}.json").read_text())
    assert card == shipped
    assert json.loads((tmp_path / f"{name}.json").read_text()) == card  # written beside the ONNX file
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.json", f"{name}.onnx"]
    layers = {row.tensor: row for row in cnncodes.list_layers(path)}
    for tap in card["taps"]:
        assert layers[tap["tensor"]].channels == tap["channels"], tap["name"]
        if tap["size"]:
            assert layers[tap["tensor"]].shape[2:] == (tap["size"], tap["size"])
    _assert_ort_equals_torch(path, name, None)


def test_export_weights_from_url_use_restricted_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that `cnncodes export --weights URL` downloads a state dict, reads it safely and exports those weights."""
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path / "models"))
    import torchvision

    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    weights_file = tmp_path / "resnet18-weights.pth"
    torch.save(state, weights_file)
    with LocalServer({"/resnet18-weights.pth": weights_file.read_bytes()}) as server:
        result = CliRunner().invoke(
            cli, ["-q", "export", "resnet18", "--weights", f"{server.url}/resnet18-weights.pth"], catch_exceptions=False
        )
    assert result.exit_code == 0, result.output
    onnx_path = tmp_path / "models" / "resnet18.onnx"
    assert result.stdout == f"resnet18: {onnx_path} (taps: layer1, layer2, layer3, layer4, penultimate, logits)\n"
    _assert_ort_equals_torch(onnx_path, "resnet18", weights_file)


def test_export_without_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that a missing torch is a MissingExtraError (also an ImportError) with the export extra's install hint."""
    monkeypatch.setitem(sys.modules, "torch", None)  # what importing torch does when it is not installed
    expected = (
        "exporting needs torch (import of torch halted; None in sys.modules); "
        "install it with: pip install 'cnncodes[export]'"
    )
    with pytest.raises(MissingExtraError, match=re.escape(expected)) as caught:
        cnncodes.export_model("resnet18", weights="random")
    assert isinstance(caught.value, ImportError)


def test_export_unknown_name_suggests() -> None:
    """Check that an unknown model name is refused before torch is needed, with a suggestion and the list."""
    expected = f"Unknown exportable model 'resnet19'. Did you mean 'resnet18'? Exportable: {', '.join(EXPORTABLE)}."
    with pytest.raises(UnknownBackboneError, match=re.escape(expected)):
        export_torchvision("resnet19", weights=None)
