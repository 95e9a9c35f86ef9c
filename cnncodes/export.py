"""Export torchvision classification models to ONNX with named taps (torch imported lazily).

Needs the ``export`` extra: ``pip install 'cnncodes[export]'``. Weights are read with
cnncodes' restricted loader, never with a bare ``torch.load``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .paths import models_dir
from .errors import CnnCodesError, UnknownBackboneError
from .weights import load_state_dict

__all__ = ["EXPORTABLE", "export_torchvision", "torchvision_card"]

_OPSET = 17


@dataclass(frozen=True)
class _ExportTap:
    name: str
    node: str  # torchvision feature-extraction node (a module path or an FX node name)
    non_negative: bool
    description: str = ""


def _taps(*rows: tuple[str, str, bool, str]) -> tuple[_ExportTap, ...]:
    return tuple(_ExportTap(*row) for row in rows)


_PENULTIMATE = "input of the classifier: the classic CNN code"
EXPORTABLE: dict[str, tuple[_ExportTap, ...]] = {
    "alexnet": _taps(
        ("conv5", "features.11", True, "last conv after ReLU"),
        ("pool5", "features.12", True, "max-pooled conv5"),
        ("fc6", "classifier.2", True, "first fully connected layer after ReLU (4096-d)"),
        ("fc7", "classifier.5", True, "second fully connected layer after ReLU (4096-d)"),
        ("penultimate", "classifier.5", True, "same as fc7"),
        ("logits", "classifier.6", False, "ImageNet-1k class scores"),
    ),
    "vgg16": _taps(
        ("conv5_3", "features.29", True, "last conv after ReLU"),
        ("pool5", "features.30", True, "max-pooled conv5_3"),
        ("fc6", "classifier.1", True, "first fully connected layer after ReLU (4096-d)"),
        ("fc7", "classifier.4", True, "second fully connected layer after ReLU (4096-d)"),
        ("penultimate", "classifier.4", True, "same as fc7"),
        ("logits", "classifier.6", False, "ImageNet-1k class scores"),
    ),
    **{
        name: _taps(
            *((f"layer{i}", f"layer{i}", True, f"end of residual stage {i}") for i in range(1, 5)),
            ("penultimate", "flatten", True, _PENULTIMATE),
            ("logits", "fc", False, "ImageNet-1k class scores"),
        )
        for name in ("resnet18", "resnet50")
    },
    "densenet121": _taps(
        *(
            (f"denseblock{i}", f"features.denseblock{i}", False, f"end of dense block {i} (before BN-ReLU)")
            for i in range(1, 5)
        ),
        ("penultimate", "flatten", True, _PENULTIMATE),
        ("logits", "classifier", False, "ImageNet-1k class scores"),
    ),
    "googlenet": _taps(
        ("inception3b", "inception3b", True, "end of inception stage 3"),
        ("inception4e", "inception4e", True, "end of inception stage 4"),
        ("inception5b", "inception5b", True, "end of inception stage 5"),
        ("penultimate", "flatten", True, _PENULTIMATE),
        ("logits", "fc", False, "ImageNet-1k class scores"),
    ),
    "mobilenet_v2": _taps(
        ("stage2", "features.3", False, "end of the stride-4 stage (linear bottleneck)"),
        ("stage3", "features.6", False, "end of the stride-8 stage (linear bottleneck)"),
        ("stage5", "features.13", False, "end of the stride-16 stage (linear bottleneck)"),
        ("head", "features.18", True, "1x1 head conv after ReLU6"),
        ("penultimate", "flatten", True, _PENULTIMATE),
        ("logits", "classifier.1", False, "ImageNet-1k class scores"),
    ),
    "mobilenet_v3_large": _taps(
        ("stage2", "features.3", False, "end of the stride-4 stage"),
        ("stage3", "features.6", False, "end of the stride-8 stage"),
        ("stage5", "features.12", False, "end of the stride-16 stage"),
        ("head", "features.16", False, "head conv after hardswish"),
        ("pool", "flatten", False, "pooled head (960-d)"),
        ("penultimate", "classifier.1", False, _PENULTIMATE + " (after hardswish)"),
        ("logits", "classifier.3", False, "ImageNet-1k class scores"),
    ),
    "efficientnet_b0": _taps(
        *((f"stage{i}", f"features.{i}", False, f"end of stage {i}") for i in range(1, 8)),
        ("head", "features.8", False, "1x1 head conv after SiLU"),
        ("penultimate", "flatten", False, _PENULTIMATE),
        ("logits", "classifier.1", False, "ImageNet-1k class scores"),
    ),
    "convnext_tiny": _taps(
        *((f"stage{i}", f"features.{2 * i - 1}", False, f"end of stage {i}") for i in range(1, 5)),
        ("penultimate", "classifier.1", False, _PENULTIMATE + " (after LayerNorm)"),
        ("logits", "classifier.2", False, "ImageNet-1k class scores"),
    ),
}
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import torchvision.models
    except ImportError as error:
        message = f"exporting needs torch and torchvision ({error}); install them with: pip install 'cnncodes[export]'"
        raise CnnCodesError(message) from error
    return torch, torchvision.models


def _check_name(name: str) -> None:
    if name not in EXPORTABLE:
        import difflib

        suggestion = difflib.get_close_matches(name, list(EXPORTABLE), n=1)
        hint = f" Did you mean '{suggestion[0]}'?" if suggestion else ""
        message = f"Unknown exportable model '{name}'.{hint} Exportable: {', '.join(EXPORTABLE)}."
        raise UnknownBackboneError(message)


def _build_module(name: str, weights: str | Path | None) -> Any:
    """A torchvision model in eval mode; ``weights`` is a .pth path or None for random."""
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
        tensors = {key: torch.from_numpy(np.array(value)) for key, value in state.items()}
        module.load_state_dict(tensors)
    if name == "googlenet":
        module.aux_logits, module.aux1, module.aux2 = False, None, None
    return module.eval()


def _wrap(module: Any, taps: tuple[_ExportTap, ...]) -> tuple[Any, list[str]]:
    """A module whose forward returns each distinct tap node as a separate output."""
    torch, _ = _import_torch()
    from torchvision.models.feature_extraction import create_feature_extractor

    nodes = list(dict.fromkeys(tap.node for tap in taps))
    output_names = [next(t.name for t in taps if t.node == node) for node in nodes]
    extractor = create_feature_extractor(module, {node: node for node in nodes})

    class TapModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.extractor = extractor

        def forward(self, images: Any) -> tuple[Any, ...]:
            outputs = self.extractor(images)
            return tuple(outputs[node] for node in nodes)

    return TapModule().eval(), output_names


def torchvision_card(name: str, output_shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """The model card of an exported torchvision model, from the shapes of its outputs."""
    _, models = _import_torch()
    weights = models.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    crop, resize = transform.crop_size[0], transform.resize_size[0]
    taps = []
    node_to_tensor: dict[str, str] = {}
    for tap in EXPORTABLE[name]:
        tensor = node_to_tensor.setdefault(tap.node, tap.name)
        shape = output_shapes[tensor]
        spatial = len(shape) == 4
        taps.append(
            {
                "name": tap.name,
                "tensor": tensor,
                "channels": int(shape[1]),
                "stride": round(crop / shape[2]) if spatial else None,
                "size": int(shape[2]) if spatial else None,
                "non_negative": tap.non_negative,
                "description": tap.description,
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
        "input_name": "images",
        "onnx_file": f"{name}.onnx",
        "default_tap": "penultimate",
        "torchvision_name": name,
        "url": weights.url,
        "taps": taps,
    }


def export_torchvision(
    name: str,
    *,
    weights: str | Path | None,
    path: Path | None = None,
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
    path : Path or None, default=None
        Output file; defaults to ``models_dir() / f"{name}.onnx"``.
    input_size : int, default=224

    Returns
    -------
    path : Path
        The ONNX file, renamed into place when complete.
    card : dict
        The model card describing the exported taps.

    Raises
    ------
    UnknownBackboneError
        If ``name`` is not exportable.
    CnnCodesError
        If torch or torchvision is missing.
    """
    _check_name(name)
    torch, _ = _import_torch()
    module = _build_module(name, weights)
    wrapper, output_names = _wrap(module, EXPORTABLE[name])
    dummy = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad():
        shapes = {n: tuple(o.shape) for n, o in zip(output_names, wrapper(dummy))}
    path = Path(path) if path else models_dir() / f"{name}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            dummy,
            str(temporary),
            input_names=["images"],
            output_names=output_names,
            dynamic_axes={"images": {0: "N"}, **{n: {0: "N"} for n in output_names}},
            opset_version=_OPSET,
            dynamo=False,
        )
    temporary.replace(path)
    return path, torchvision_card(name, shapes)


def reference_outputs(name: str, weights: str | Path | None, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run the torch model on normalized float NCHW ``images``; return each tap's output."""
    torch, _ = _import_torch()
    wrapper, output_names = _wrap(_build_module(name, weights), EXPORTABLE[name])
    with torch.no_grad():
        outputs = wrapper(torch.from_numpy(np.ascontiguousarray(images, np.float32)))
    return {n: o.numpy() for n, o in zip(output_names, outputs)}
