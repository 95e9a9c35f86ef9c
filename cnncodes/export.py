"""Export torchvision classification models to ONNX with named taps (torch imported lazily, extra ``export``).

Which taps a model has, and what each one is, is declared once: in its shipped model card.
This module knows only where each tap sits in the torchvision module (its feature-extraction
node). Weights are read with cnncodes' restricted loader, never with a bare ``torch.load``.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from .errors import UnknownBackboneError
from .extras import import_extra
from .fileio import atomic_path
from .messages import did_you_mean
from .paths import cards_dir, models_dir

__all__ = ["EXPORTABLE", "export_torchvision", "reference_outputs"]

_OPSET = 17
_INPUT_NAME = "images"
_RESNET_NODES = {**{f"layer{i}": f"layer{i}" for i in range(1, 5)}, "penultimate": "flatten", "logits": "fc"}
# Tap name (as in the model card, in card order) -> torchvision node: a module path or an FX node name.
_NODES: dict[str, dict[str, str]] = {
    "alexnet": {"conv5": "features.11", "pool5": "features.12", "fc6": "classifier.2", "fc7": "classifier.5"}
    | {"penultimate": "classifier.5", "logits": "classifier.6"},
    "vgg16": {"conv5_3": "features.29", "pool5": "features.30", "fc6": "classifier.1", "fc7": "classifier.4"}
    | {"penultimate": "classifier.4", "logits": "classifier.6"},
    "resnet18": _RESNET_NODES,
    "resnet50": _RESNET_NODES,
    "densenet121": {f"denseblock{i}": f"features.denseblock{i}" for i in range(1, 5)}
    | {"penultimate": "flatten", "logits": "classifier"},
    "googlenet": {"inception3b": "inception3b", "inception4e": "inception4e", "inception5b": "inception5b"}
    | {"penultimate": "flatten", "logits": "fc"},
    "mobilenet_v2": {"stage2": "features.3", "stage3": "features.6", "stage5": "features.13", "head": "features.18"}
    | {"penultimate": "flatten", "logits": "classifier.1"},
    "mobilenet_v3_large": {"stage2": "features.3", "stage3": "features.6", "stage5": "features.12"}
    | {"head": "features.16", "pool": "flatten", "penultimate": "classifier.1", "logits": "classifier.3"},
    "efficientnet_b0": {f"stage{i}": f"features.{i}" for i in range(1, 8)}
    | {"head": "features.8", "penultimate": "flatten", "logits": "classifier.1"},
    "convnext_tiny": {f"stage{i}": f"features.{2 * i - 1}" for i in range(1, 5)}
    | {"penultimate": "classifier.1", "logits": "classifier.2"},
}
EXPORTABLE: tuple[str, ...] = tuple(sorted(_NODES))  # the torchvision models 'cnncodes export' knows
# torchvision renamed DenseNet's "norm.1"-style keys; old state dicts still use them.
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _import_torch() -> tuple[Any, Any]:
    """torch and torchvision.models, or a MissingExtraError naming the ``export`` extra."""
    return import_extra("torch", "export", "exporting"), import_extra("torchvision.models", "export", "exporting")


def _check_name(name: str) -> None:
    if name not in _NODES:
        hint = did_you_mean(name, EXPORTABLE)
        message = f"Unknown exportable model '{name}'.{hint} Exportable: {', '.join(EXPORTABLE)}."
        raise UnknownBackboneError(message)


def _outputs(name: str) -> dict[str, str]:
    """Node -> ONNX output name: taps on one node share one output, named after the first of them."""
    first: dict[str, str] = {}
    for tap, node in _NODES[name].items():
        first.setdefault(node, tap)
    return first


def _build_module(name: str, weights: str | Path | None) -> Any:
    """A torchvision model in eval mode; ``weights`` is a .pth path or None for random."""
    import numpy as np

    from .weights import load_state_dict

    torch, models = _import_torch()
    kwargs: dict[str, Any] = {"weights": None}
    if name == "googlenet":  # the ImageNet weights expect these settings
        kwargs.update(aux_logits=True, transform_input=True, init_weights=False)
    torch.manual_seed(0)
    module = models.get_model(name, **kwargs)
    if weights is not None:
        state = load_state_dict(weights)
        if name == "densenet121":
            state = {_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}
        module.load_state_dict({key: torch.from_numpy(np.array(value)) for key, value in state.items()})
    if name == "googlenet":
        module.aux_logits, module.aux1, module.aux2 = False, None, None
    return module.eval()


def _wrap(module: Any, name: str) -> Any:
    """A module whose forward returns each distinct tap node of ``name`` as a separate output."""
    torch, _ = _import_torch()
    from torchvision.models.feature_extraction import create_feature_extractor

    nodes = list(_outputs(name))
    extractor = create_feature_extractor(module, {node: node for node in nodes})

    class TapModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.extractor = extractor

        def forward(self, images: Any) -> tuple[Any, ...]:
            outputs = self.extractor(images)
            return tuple(outputs[node] for node in nodes)

    return TapModule().eval()


def _card(name: str, output_shapes: dict[str, tuple[int, ...]], onnx_file: str) -> dict[str, Any]:
    """The model card of an exported model: preprocessing from torchvision, tap sizes measured, tap meaning shipped."""
    _, models = _import_torch()
    weights = models.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    crop, resize = transform.crop_size[0], transform.resize_size[0]
    shipped = json.loads((cards_dir() / f"{name}.json").read_text(encoding="utf-8"))
    meaning = {tap["name"]: tap for tap in shipped["taps"]}
    outputs = _outputs(name)
    taps = []
    for tap, node in _NODES[name].items():
        shape = output_shapes[outputs[node]]
        spatial = len(shape) == 4
        taps.append(
            {
                "name": tap,
                "tensor": outputs[node],
                "channels": int(shape[1]),
                "stride": round(crop / shape[2]) if spatial else None,
                "size": int(shape[2]) if spatial else None,
                "non_negative": meaning[tap]["non_negative"],
                "description": meaning[tap]["description"],
            }
        )
    return {
        "name": name,
        "architecture": name,
        "source": "torchvision",
        "license": "BSD-3-Clause (torchvision code); weights: see torchvision's model docs",
        "description": f"torchvision {name}, {weights} weights, exported by 'cnncodes export {name}'",
        "input_size": crop,
        "crop_fraction": round(crop / resize, 6),
        "interpolation": transform.interpolation.value,
        "mean": [round(255 * m, 4) for m in transform.mean],
        "std": [round(255 * s, 4) for s in transform.std],
        "color_order": "RGB",
        "input_name": _INPUT_NAME,
        "onnx_file": onnx_file,
        "default_tap": "penultimate",
        "torchvision_name": name,
        "url": weights.url,
        "taps": taps,
    }


def export_torchvision(
    name: str,
    *,
    weights: str | Path | None,
    path: Path | str | None = None,
    input_size: int = 224,
) -> tuple[Path, dict[str, Any]]:
    """Export a torchvision model with its taps as named ONNX outputs.

    Parameters
    ----------
    name : str
        One of :data:`EXPORTABLE`.
    weights : str, Path or None
        A ``.pth`` state dict (read by the restricted loader), or None for random
        weights (tests, or checking the graph without internet).
    path : Path, str or None, default=None
        Output file; defaults to ``models_dir() / f"{name}.onnx"``.
    input_size : int, default=224
        Height and width of the example input that fixes the taps' sizes in the card.

    Returns
    -------
    path : Path
        The ONNX file, renamed into place when complete.
    card : dict
        The model card describing the exported taps (``onnx_file`` is the file's name).

    Raises
    ------
    UnknownBackboneError
        If ``name`` is not exportable (checked before torch is imported).
    MissingExtraError
        If torch or torchvision is missing.

    Examples
    --------
    >>> export_torchvision("resnet19", weights=None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnncodes.errors.UnknownBackboneError: Unknown exportable model 'resnet19'. Did you mean 'resnet18'? Exportable: ...
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path, card = export_torchvision("mobilenet_v2", weights=None, path=Path(folder) / "mobilenet.onnx")
    >>> path.name, card["onnx_file"], [tap["name"] for tap in card["taps"]][:3]
    ('mobilenet.onnx', 'mobilenet.onnx', ['stage2', 'stage3', 'stage5'])
    """
    _check_name(name)
    torch, _ = _import_torch()
    wrapper = _wrap(_build_module(name, weights), name)
    output_names = list(_outputs(name).values())
    dummy = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad():
        shapes = {output: tuple(value.shape) for output, value in zip(output_names, wrapper(dummy))}
    path = Path(path) if path else models_dir() / f"{name}.onnx"
    with atomic_path(path, suffix=".onnx") as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's exporter warns about its own internals
        torch.onnx.export(
            wrapper,
            dummy,
            str(temporary),
            input_names=[_INPUT_NAME],
            output_names=output_names,
            dynamic_axes={_INPUT_NAME: {0: "N"}, **{output: {0: "N"} for output in output_names}},
            opset_version=_OPSET,
            dynamo=False,
        )
    return path, _card(name, shapes, path.name)


def reference_outputs(name: str, weights: str | Path | None, images: Any) -> dict[str, Any]:
    """Run the torch model itself, as a reference for the exported ONNX graph.

    Parameters
    ----------
    name : str
        One of :data:`EXPORTABLE`.
    weights : str, Path or None
        As for :func:`export_torchvision`.
    images : ndarray of shape (N, 3, H, W), float32
        Already normalized model inputs.

    Returns
    -------
    dict of str to ndarray
        Each ONNX output of :func:`export_torchvision` (named after its first tap), from torch.

    Raises
    ------
    UnknownBackboneError, MissingExtraError
        As :func:`export_torchvision` does.

    Examples
    --------
    >>> import numpy as np
    >>> outputs = reference_outputs("mobilenet_v2", None, np.zeros((1, 3, 64, 64), np.float32))
    >>> outputs["stage2"].shape, outputs["logits"].shape
    ((1, 24, 16, 16), (1, 1000))
    """
    import numpy as np

    _check_name(name)
    torch, _ = _import_torch()
    wrapper = _wrap(_build_module(name, weights), name)
    with torch.no_grad():
        outputs = wrapper(torch.from_numpy(np.ascontiguousarray(images, np.float32)))
    return {output: value.numpy() for output, value in zip(_outputs(name).values(), outputs)}
