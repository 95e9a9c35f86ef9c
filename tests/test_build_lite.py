"""Tests of the EfficientNet-Lite ONNX builder: structure, determinism, parity with PyTorch, labels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data
from sklearn.datasets import load_sample_image

import cnncodes
from cnncodes.backbones import get_backbone, lite_weights_path
from cnncodes.build_lite import build_lite_model, write_onnx
from cnncodes.runtime import Session
from cnncodes.taps import prepare_model
from cnncodes.weights import load_state_dict

from tests.reference_lite import ReferenceLite

LITES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


@pytest.fixture(scope="module", params=LITES)
def lite(request: pytest.FixtureRequest) -> tuple[str, onnx.ModelProto]:
    spec = get_backbone(request.param)
    return request.param, build_lite_model(load_state_dict(lite_weights_path(spec.name)), spec.input_size)


def test_build_lite_model_folds_bn_and_pads_inside_conv(lite: tuple[str, onnx.ModelProto]) -> None:
    """Check that the graph has no BatchNormalization or Pad nodes and SAME pads are asymmetric at stride 2."""
    _, model = lite
    ops = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in ops and "Pad" not in ops
    stride2 = [
        n
        for n in model.graph.node
        if n.op_type == "Conv"
        and list(onnx.helper.get_attribute_value(next(a for a in n.attribute if a.name == "strides"))) == [2, 2]
    ]
    assert stride2
    pads = [list(onnx.helper.get_attribute_value(next(a for a in n.attribute if a.name == "pads"))) for n in stride2]
    assert any(p[0] != p[2] for p in pads)  # begin != end somewhere: TF 'SAME', not symmetric


def test_build_lite_model_is_deterministic(tmp_path: Path) -> None:
    """Check that building twice gives byte-identical files (the same sha256)."""
    digests = []
    for attempt in range(2):
        path = tmp_path / f"lite0_{attempt}.onnx"
        write_onnx(build_lite_model(load_state_dict(lite_weights_path("efficientnet_lite0")), 224), path)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lite0_0.onnx", "lite0_1.onnx"]  # no temporary file left


def test_build_lite_model_matches_pytorch_reference(lite: tuple[str, onnx.ModelProto], tmp_path: Path) -> None:
    """Check that ONNX Runtime's codes and logits equal a PyTorch eager reference within 1e-4."""
    name, model = lite
    spec = get_backbone(name)
    path = tmp_path / f"{name}.onnx"
    write_onnx(model, path)
    taps = ["stage4", "stage7", "head", "penultimate", "logits"]
    session = Session(
        prepare_model(path, taps, input_name="images", input_size=spec.input_size, mean=spec.mean, std=spec.std), "cpu"
    )
    images = [skimage_data.coffee(), skimage_data.chelsea()]
    pixels = np.stack([np.asarray(Image.fromarray(a).resize((spec.input_size,) * 2)) for a in images])
    ours = session.run(pixels)
    state = torch.load(lite_weights_path(name), map_location="cpu", weights_only=True)
    x = torch.from_numpy((pixels.astype(np.float32) - 127.0) / 128.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        theirs = ReferenceLite(state)(x)
    for tap in taps:
        np.testing.assert_allclose(ours[tap], theirs[tap].numpy(), rtol=1e-4, atol=1e-4, err_msg=tap)


EXPECTED = {
    "coffee": {"espresso"},
    "chelsea": {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"},
    "china": {"palace", "monastery", "church", "bell cote", "pagoda", "dome", "stupa", "boathouse", "triumphal arch"},
    "flower": {"daisy", "pot", "vase", "cardoon", "sunflower", "bee"},
}


def _sample_images() -> dict[str, np.ndarray]:
    return {
        "coffee": skimage_data.coffee(),
        "chelsea": skimage_data.chelsea(),
        "china": load_sample_image("china.jpg"),
        "flower": load_sample_image("flower.jpg"),
    }


@pytest.mark.parametrize("model", LITES)
def test_lite_top1_labels_on_real_photos(model: str) -> None:
    """Check that the Lite models name the shipped photos correctly (top-1).

    ``flower.jpg`` is a dahlia, which ImageNet-1k has no class for: Lite0 says daisy,
    Lite1 and Lite2 say honeycomb (its pattern), so it is checked on Lite0 only.
    """
    images = _sample_images()
    if model != "efficientnet_lite0":
        del images["flower"]
    result = cnncodes.extract(list(images.values()), model=model, layer="logits", cache=False, progress=False)
    names = cnncodes.imagenet_class_names()
    top1 = {key: names[int(np.argmax(row))] for key, row in zip(images, result.codes)}
    for key, label in top1.items():
        assert label in EXPECTED[key], f"{model}: {key} -> {label}"
    assert top1["coffee"] == "espresso"
