"""Ready model files for zoo backbones (built or fetched on first use), and their layer tables."""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .backbones import BackboneSpec, TapSpec, get_backbone, lite_weights_path, list_backbones
from .paths import models_dir
from .build_lite import build_lite_model, save_model
from .download import download_file
from .errors import DownloadError, ModelFileError
from .export import export_torchvision
from .fingerprint import sha256_file
from .taps import graph_input, list_tensors
from .weights import load_state_dict

__all__ = [
    "resolve_backbone",
    "ensure_model_file",
    "fetch_model",
    "export_model",
    "LayerRow",
    "list_layers",
    "ModelRow",
    "list_models",
]

logger = logging.getLogger("cnncodes")


def _build_lite(spec: BackboneSpec) -> Path:
    weights = lite_weights_path(spec.name)
    logger.info("Building %s from %s (once) ...", spec.onnx_path, weights.name)
    model = build_lite_model(load_state_dict(weights), spec.input_size, source=str(weights))
    save_model(model, spec.onnx_path)
    return spec.onnx_path


_IMAGENET_MEAN = (123.675, 116.28, 103.53)
_IMAGENET_STD = (58.395, 57.12, 57.375)


def resolve_backbone(model: str | Path) -> BackboneSpec:
    """A zoo backbone by name, or an ad-hoc spec for the path of any ``.onnx`` file.

    An ONNX file gets torchvision-style preprocessing (224 px, crop 0.875, bilinear,
    ImageNet mean and std, RGB) and one tap per float tensor, named as the tensor;
    its first graph input must take float NCHW images.

    Raises
    ------
    UnknownBackboneError
        If ``model`` is neither a zoo name nor an existing ``.onnx`` file.
    """
    if str(model).endswith(".onnx") and Path(model).is_file():
        path = Path(model).resolve()
        tensors = list_tensors(path)
        taps = tuple(
            TapSpec(
                t.name,
                t.name,
                t.n_features or 0,
                None,
                t.shape[2] if len(t.shape) == 4 and isinstance(t.shape[2], int) else None,
                False,
            )
            for t in tensors
        )
        input_name, input_size = graph_input(path)
        default = tensors[-1].name if tensors else ""
        spec = BackboneSpec(
            name=str(model),
            architecture="onnx",
            source="file",
            license="unknown",
            input_size=input_size,
            crop_fraction=0.875,
            interpolation="bilinear",
            mean=_IMAGENET_MEAN,
            std=_IMAGENET_STD,
            color_order="RGB",
            input_name=input_name,
            onnx_file=path.name,
            taps=taps,
            default_tap=default,
            extra={"onnx_path": str(path)},
        )
        return spec
    return get_backbone(str(model))


def model_file_path(spec: BackboneSpec) -> Path:
    """The ONNX file of ``spec``: the given file for ad-hoc specs, else in the model directory."""
    return Path(spec.extra["onnx_path"]) if "onnx_path" in spec.extra else spec.onnx_path


def fetch_model(name: str, *, progress: bool | None = None) -> Path:
    """Download a zoo backbone whose card gives a URL and sha256 of a ready ONNX file.

    Parameters
    ----------
    name : str
        A backbone whose card has ``url`` (and ideally ``sha256``).
    progress : bool or None, default=None
        Show a progress line on stderr; None shows it only on a terminal.

    Returns
    -------
    Path
        The ONNX file in :func:`cnncodes.backbones.models_dir`.

    Raises
    ------
    ModelFileError
        If the card has no ready-ONNX URL.
    DownloadError
        If the download fails or the checksum does not match (no file is left).
    """
    spec = get_backbone(name)
    if spec.source != "url" or not spec.url:
        message = f"{name}: its card gives no ONNX file to download (source '{spec.source}')"
        raise ModelFileError(message)
    logger.info("Fetching %s from %s", spec.onnx_path.name, spec.url)
    show = sys.stderr.isatty() if progress is None else progress
    kwargs = {} if show else {"progress": None}
    return download_file(spec.url, spec.onnx_path, sha256=spec.sha256, **kwargs)


def ensure_model_file(spec: BackboneSpec) -> Path:
    """Return the backbone's ONNX file, building (Lite) or fetching (URL) it if missing.

    Raises
    ------
    ModelFileError
        If the file is missing and cannot be made here (a torchvision model that
        was not exported yet), or if its sha256 differs from the card's.
    """
    if "onnx_path" in spec.extra:
        return model_file_path(spec)
    if not spec.is_present():
        if spec.source == "pypi-lite":
            return _build_lite(spec)
        if spec.source == "url":
            return fetch_model(spec.name)
        message = (
            f"{spec.name}: {spec.onnx_path} is missing; run 'cnncodes export {spec.name}' "
            "(needs: pip install 'cnncodes[export]')"
        )
        raise ModelFileError(message)
    if spec.source == "url" and spec.sha256 and sha256_file(spec.onnx_path) != spec.sha256:
        message = f"{spec.onnx_path}: sha256 differs from its model card; delete it and run 'cnncodes models fetch {spec.name}'"
        raise ModelFileError(message)
    return spec.onnx_path


@dataclass(frozen=True)
class LayerRow:
    """One row of ``cnncodes layers``."""

    name: str
    tensor: str
    channels: int | None
    size: int | None  # spatial height/width at the model's input size
    stride: int | None
    non_negative: bool | None  # None when unknown (arbitrary ONNX files)
    relu: bool | None  # whether ReLU is applied by default
    shape: tuple[int | str, ...] | None = None  # full shape, for arbitrary ONNX files

    def as_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return asdict(self)


def list_layers(model: str | Path) -> list[LayerRow]:
    """List the taps of a zoo backbone, or the candidate tensors of any ONNX file.

    Parameters
    ----------
    model : str or Path
        A zoo name (its card's taps; no model file needed) or the path of an
        ``.onnx`` file (tensors with shapes from ONNX shape inference).

    Returns
    -------
    list of LayerRow

    Examples
    --------
    >>> [row.name for row in list_layers("efficientnet_lite0")][:3]
    ['penultimate', 'stage1', 'stage2']
    """
    if str(model).endswith(".onnx") or Path(model).is_file():
        return [
            LayerRow(
                t.name,
                t.name,
                t.n_features,
                t.shape[2] if len(t.shape) == 4 and isinstance(t.shape[2], int) else None,
                None,
                None,
                None,
                t.shape,
            )
            for t in list_tensors(model)
        ]
    spec = get_backbone(str(model))
    return [
        LayerRow(t.name, t.tensor, t.channels, t.size, t.stride, t.non_negative, t.relu_by_default) for t in spec.taps
    ]


@dataclass(frozen=True)
class ModelRow:
    """One row of ``cnncodes models``."""

    name: str
    input_size: int
    taps: dict[str, int]  # tap name -> code length with global pooling
    default_tap: str
    present: bool
    source: str
    license: str
    path: str

    def as_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return asdict(self)


def list_models() -> list[ModelRow]:
    """Summaries of every zoo backbone: size, taps, whether its ONNX file is here, license."""
    return [
        ModelRow(
            spec.name,
            spec.input_size,
            {t.name: t.channels for t in spec.taps},
            spec.default_tap,
            spec.is_present(),
            spec.source,
            spec.license,
            str(spec.onnx_path),
        )
        for spec in list_backbones()
    ]


_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.pth$")


def _weights_file(name: str, weights: str) -> Path | None:
    """Resolve ``weights`` for :func:`export_model` to a local .pth file (None = random)."""
    if weights == "random":
        return None
    if weights == "imagenet":
        url = get_backbone(name).url
        if not url:
            message = f"{name}: its card gives no weights URL; pass weights=PATH or URL"
            raise ModelFileError(message)
        weights = url
    if "://" not in weights:
        return Path(weights)
    path = models_dir() / "weights" / weights.rsplit("/", 1)[-1]
    if not path.is_file():
        logger.info("Downloading weights %s", weights)
        download_file(weights, path, **({} if sys.stderr.isatty() else {"progress": None}))
        expected = _HASH_IN_NAME.search(path.name)  # torchvision names carry a sha256 prefix
        if expected and not sha256_file(path).startswith(expected.group(1)):
            path.unlink()
            message = f"{weights}: sha256 does not start with {expected.group(1)} as its name says; removed"
            raise DownloadError(message)
    return path


def export_model(name: str, *, weights: str = "imagenet", path: Path | None = None) -> tuple[Path, dict[str, object]]:
    """Export a torchvision backbone to ONNX with its taps, and write its model card.

    Parameters
    ----------
    name : str
        A torchvision model name (``cnncodes.export.EXPORTABLE``).
    weights : str, default="imagenet"
        ``"imagenet"`` downloads torchvision's default weights (URL from the card),
        ``"random"`` uses random weights, anything else is a ``.pth`` path or URL.
        Files are always read by the restricted loader.
    path : Path or None, default=None
        Output ONNX file; default ``models_dir() / f"{name}.onnx"``.

    Returns
    -------
    path : Path
        The ONNX file.
    card : dict
        Its model card (also written beside it unless the zoo already has one).
    """
    weights_path = _weights_file(name, weights)
    onnx_path, card = export_torchvision(name, weights=weights_path, path=path)
    card_path = onnx_path.with_suffix(".json")
    if not card_path.exists():
        card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    logger.info("Exported %s (%s weights) to %s", name, weights, onnx_path)
    return onnx_path, card
