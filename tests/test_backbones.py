"""Tests of the model cards and the zoo registry."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import cnncodes
from cnncodes.backbones import cards_dir, get_backbone, list_backbones
from cnncodes.errors import UnknownBackboneError, UnknownLayerError
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
    path = cnncodes.ensure_model_file(spec)
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
    assert set(cnncodes.EXPORTABLE) <= set(names)
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


def test_models_dir_override_adds_user_cards(tmp_path, monkeypatch) -> None:
    """Check that a card in CNNCODES_MODELS_DIR joins the zoo and its ONNX file is looked for there."""
    card = json.loads((cards_dir() / "resnet18.json").read_text())
    card["name"] = "my_resnet"
    (tmp_path / "my_resnet.json").write_text(json.dumps(card))
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path))
    spec = get_backbone("my_resnet")
    assert spec.onnx_path == tmp_path / "resnet18.onnx"
    assert not spec.is_present()
