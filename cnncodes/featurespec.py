"""What codes are: the requested code options, and each tap's resolved feature-set spec with its JSON form.

A feature-set spec holds everything that changes one tap's numbers; its canonical JSON is
what the cache's fingerprint hashes and what ``spec.json`` files and codes files hold, so its
keys and values must never drift for the same options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from .backbones import BackboneSpec, TapSpec
from .errors import CacheFormatError
from .fingerprint import canonical_json, spec_fingerprint
from .images import Preprocessing
from .params import CODE_PARAMETERS, POWER_EXPONENT, check_parameter, default, layer_tuple

__all__ = ["ExtractionOptions", "FeatureSetSpec"]


@dataclass(frozen=True)
class ExtractionOptions:
    """Everything that changes the codes: one field per fingerprinted parameter of :mod:`cnncodes.params`.

    Parameters
    ----------
    model : str, default="efficientnet_lite0"
        Zoo backbone or path of an ``.onnx`` file.
    layer : str, tuple of str or None, default=None
        Tap, or taps whose codes are concatenated; None: the backbone's default tap. A list
        is stored as a tuple.
    pooling : str, default="avg"
        Spatial pooling, one of ``params.POOLINGS``.
    grid : int or None, default=None
        Pool each cell of a grid x grid layout.
    gem_p : float, default=3.0
        GeM exponent (``pooling="gem"`` only).
    relu : bool or None, default=None
        None: ReLU on taps that are not already non-negative.
    views : str, default="none"
        Test-time views, one of ``params.VIEWS``.
    decoder : str, default="fast"
        How images become model inputs, one of ``params.DECODERS``.
    combine : str, default="mean"
        How views combine, one of ``params.COMBINES``.
    normalize : str, default="none"
        Code normalization, one of ``params.NORMALIZATIONS``.
    dtype : str, default="float32"
        Storage precision, one of ``params.DTYPES``.
    precision : str, default="fp32"
        The network's arithmetic, one of ``params.PRECISIONS`` (int8 and fp16 run graphs that
        :mod:`cnncodes.quantize` builds).

    Examples
    --------
    >>> options = ExtractionOptions(layer=["stage4", "penultimate"], pooling="gem")
    >>> options.layer, options.layers("penultimate"), ExtractionOptions().layers("penultimate")
    (('stage4', 'penultimate'), ('stage4', 'penultimate'), ('penultimate',))
    """

    model: str = default("model")
    layer: str | tuple[str, ...] | None = default("layer")
    pooling: str = default("pooling")
    grid: int | None = default("grid")
    gem_p: float = default("gem_p")
    relu: bool | None = default("relu")
    views: str = default("views")
    decoder: str = default("decoder")
    combine: str = default("combine")
    normalize: str = default("normalize")
    dtype: str = default("dtype")
    precision: str = default("precision")

    def __post_init__(self) -> None:
        if isinstance(self.layer, list):  # hashable, so options can key a worker's extractors
            object.__setattr__(self, "layer", tuple(self.layer))

    def check(self, owner: str = "") -> None:
        """Raise a one-line error for the first value out of range.

        Parameters
        ----------
        owner : str, default=""
            The estimator to name in the message (``"CNNCodes"``).

        Raises
        ------
        InputError

        Examples
        --------
        >>> ExtractionOptions(grid=0).check()
        Traceback (most recent call last):
        ...
        cnncodes.errors.InputError: The 'grid' parameter must be a positive int or None. Got 0 instead.
        """
        for name in CODE_PARAMETERS:
            check_parameter(name, getattr(self, name), owner)

    def layers(self, default_tap: str) -> tuple[str, ...]:
        """The requested taps as a tuple.

        Parameters
        ----------
        default_tap : str
            The backbone's default tap, for ``layer=None``.

        Returns
        -------
        tuple of str
        """
        return layer_tuple(self.layer, default_tap)

    def preprocessing(self, backbone: BackboneSpec) -> Preprocessing:
        """How images become ``backbone``'s inputs under these options.

        Parameters
        ----------
        backbone : BackboneSpec
            Gives the input size, crop and interpolation.

        Returns
        -------
        Preprocessing
        """
        return Preprocessing(
            backbone.input_size, backbone.crop_fraction, backbone.interpolation, self.views, self.decoder
        )


@dataclass(frozen=True)
class FeatureSetSpec:
    """Everything that changes one tap's codes: the key of its feature set in the cache.

    Build one with :meth:`of_tap`; :meth:`as_dict` gives the plain form the cache stores and
    fingerprints, :meth:`from_dict` reads it back.

    Examples
    --------
    >>> from cnncodes.backbones import get_backbone
    >>> backbone = get_backbone("efficientnet_lite0")
    >>> options = ExtractionOptions(layer="stage4", pooling="gem")
    >>> spec = FeatureSetSpec.of_tap(options, backbone, backbone.get_tap("stage4"), model_sha256="0" * 64)
    >>> spec.pooling, spec.gem_p, spec.power, spec.as_dict()["preprocessing"]["input_size"]
    ('gem', 3.0, None, 224)
    >>> FeatureSetSpec.from_json(spec.to_json()) == spec
    True
    >>> penultimate = backbone.get_tap("penultimate")
    >>> int8 = FeatureSetSpec.of_tap(ExtractionOptions(precision="int8"), backbone, penultimate, "1" * 64)
    >>> "precision" in spec.as_dict(), int8.as_dict()["precision"], FeatureSetSpec.from_json(int8.to_json()) == int8
    (False, 'int8', True)
    """

    model: str  # backbone name
    model_sha256: str  # of the ONNX file the codes came from
    tap: str
    tensor: str  # tensor name in the ONNX graph
    preprocessing: Preprocessing
    mean: tuple[float, ...]  # per channel, 0..255 units
    std: tuple[float, ...]
    color_order: str
    relu: bool
    pooling: str  # "none" for a tap that is already a vector
    grid: int | None  # None for global pooling and for vectors
    gem_p: float | None  # None unless GeM pooling of a spatial tap
    combine: str | None  # None without test-time views
    normalize: str
    dtype: str
    precision: str = "fp32"  # the graph's arithmetic; its file's sha256 is model_sha256

    @classmethod
    def of_tap(
        cls, options: ExtractionOptions, backbone: BackboneSpec, tap: TapSpec, model_sha256: str
    ) -> FeatureSetSpec:
        """The spec of ``tap``'s codes under ``options``: options that do not act on this tap are left out.

        Parameters
        ----------
        options : ExtractionOptions
            The requested options.
        backbone : BackboneSpec
            The backbone the tap belongs to.
        tap : TapSpec
            One of its taps.
        model_sha256 : str
            sha256 of the backbone's ONNX file.

        Returns
        -------
        FeatureSetSpec
        """
        spatial = tap.is_spatial
        return cls(
            model=backbone.name,
            model_sha256=model_sha256,
            tap=tap.name,
            tensor=tap.tensor,
            preprocessing=options.preprocessing(backbone),
            mean=tuple(backbone.mean),
            std=tuple(backbone.std),
            color_order=backbone.color_order,
            relu=tap.relu_by_default if options.relu is None else options.relu,
            pooling=options.pooling if spatial else "none",
            grid=options.grid if spatial else None,
            gem_p=options.gem_p if spatial and options.pooling == "gem" else None,
            combine=options.combine if options.views != "none" else None,
            normalize=options.normalize,
            dtype=options.dtype,
            precision=options.precision,
        )

    @property
    def power(self) -> float | None:
        """The exponent of power normalization (the constant ``params.POWER_EXPONENT``), or None."""
        return POWER_EXPONENT if self.normalize == "power" else None

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON and the key-scheme version: names the feature set in the cache."""
        return spec_fingerprint(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """The plain form that the cache fingerprints and stores.

        Returns
        -------
        dict
            JSON-serializable; the same options always give the same dict.
        """
        return {
            "model": self.model,
            "model_sha256": self.model_sha256,
            "tap": self.tap,
            "tensor": self.tensor,
            "preprocessing": {
                **self.preprocessing.as_dict(),
                "mean": list(self.mean),
                "std": list(self.std),
                "color_order": self.color_order,
            },
            "relu": self.relu,
            "pooling": self.pooling,
            "grid": self.grid,
            "gem_p": self.gem_p,
            "combine": self.combine,
            "normalize": self.normalize,
            "power": self.power,
            "dtype": self.dtype,
            # Only when not fp32: fp32 specs stay byte-identical to earlier versions', so their caches stay valid.
            **({"precision": self.precision} if self.precision != "fp32" else {}),
        }

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> FeatureSetSpec:
        """Read back what :meth:`as_dict` wrote.

        Parameters
        ----------
        spec : dict
            A feature-set spec, e.g. the ``spec`` of a cache folder's ``spec.json``.

        Returns
        -------
        FeatureSetSpec

        Raises
        ------
        CacheFormatError
            If ``spec`` is not exactly a spec this cnncodes writes (missing or other fields,
            other fixed decoding rules).
        """
        try:
            pre = spec["preprocessing"]
            decoder = pre.get("decoder", "exact")  # specs before the fast decoder name none
            preprocessing = Preprocessing(
                pre["input_size"], pre["crop_fraction"], pre["interpolation"], pre["views"], decoder
            )
            fields = {k: spec[k] for k in ("model", "model_sha256", "tap", "tensor", "relu", "pooling", "grid")}
            result = cls(
                **fields,
                preprocessing=preprocessing,
                mean=tuple(pre["mean"]),
                std=tuple(pre["std"]),
                color_order=pre["color_order"],
                **{k: spec[k] for k in ("gem_p", "combine", "normalize", "dtype")},
                precision=spec.get("precision", "fp32"),
            )
        except (KeyError, TypeError) as error:
            message = f"not a feature-set spec of this cnncodes (missing {error})"
            raise CacheFormatError(message) from error
        if result.as_dict() != spec:
            message = f"not a feature-set spec of this cnncodes (it differs from what this version writes: {spec})"
            raise CacheFormatError(message)
        return result

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): the text the fingerprint hashes.

        Returns
        -------
        str
        """
        return canonical_json(self.as_dict())

    @classmethod
    def from_json(cls, text: str) -> FeatureSetSpec:
        """Read back what :meth:`to_json` wrote; a ``CacheFormatError`` as :meth:`from_dict` if it is not a spec."""
        return cls.from_dict(json.loads(text))


def options_of_codes_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The code parameters that made a codes file's codes, from its spec (``ExtractionOptions`` keywords).

    Parameters
    ----------
    spec : mapping
        A codes file's spec: its ``options`` hold the extraction options.

    Returns
    -------
    dict
        Only the code parameters; JSON lists back to tuples. A spec from before the fast
        decoder names no decoder: its codes are the exact decoder's.

    Examples
    --------
    >>> options_of_codes_spec({"options": {"layer": ["stage4"], "pooling": "gem", "cache": "x"}})
    {'layer': ('stage4',), 'pooling': 'gem', 'decoder': 'exact'}
    """
    stored = spec.get("options") or {}
    options = {name: stored[name] for name in CODE_PARAMETERS if name in stored}
    if isinstance(options.get("layer"), list):
        options["layer"] = tuple(options["layer"])
    options.setdefault("decoder", "exact")
    return options
