"""CNNCodes: the scikit-learn face of extraction (images in, float32 codes out)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .engine import ExtractionOptions, ExtractionResult, Extractor
from .params import CODE_PARAMETERS, ESTIMATOR_ON_ERROR, PARAMETERS, RUN_PARAMETERS, check_parameter, default

__all__ = ["CNNCodes"]


class CNNCodes(TransformerMixin, BaseEstimator):
    """Turn images into CNN codes of a frozen ImageNet backbone, as a scikit-learn transformer.

    ``X`` is a sequence of images: paths (a list, a 1-D Series, a one-column DataFrame
    as ``ColumnTransformer`` hands it, an (n, 1) object array), bytes, H x W x 3 uint8
    arrays or PIL images, or an N x H x W x 3 uint8 array. Codes are cached by image
    content and feature set, so refitting, cross-validation and grid searches compute
    each image's codes at most once per feature set.

    Parameters
    ----------
    model : str, default="efficientnet_lite0"
        Zoo backbone (``cnncodes models``) or path of an ``.onnx`` file.
    layer : str, sequence of str or None, default=None
        Tap, or taps whose codes are concatenated; None: the backbone's default tap.
    pooling : {"avg", "max", "gem"}, default="avg"
        Spatial pooling of feature maps.
    grid : int or None, default=None
        Pool each cell of a grid x grid layout (code length x grid**2); None: global.
    gem_p : float, default=3.0
        Exponent of generalized-mean pooling (``pooling="gem"`` only).
    relu : bool or None, default=None
        ReLU before pooling; None: only on taps that are not already non-negative.
    views : {"none", "flip", "5crop", "10crop", "razavian16"}, default="none"
        Test-time views of each image.
    decoder : {"fast", "exact"}, default="fast"
        "fast": libjpeg-turbo decoding and OpenCV resizing (same accuracy, about half the CPU
        time); "exact": Pillow's decoding and resizing, the codes of earlier versions.
    combine : {"mean", "sum", "max", "none"}, default="mean"
        How the views' codes combine; "none" concatenates them.
    normalize : {"none", "l2", "power"}, default="none"
        Per-layer code normalization; "power" is the signed square root, then L2.
    dtype : {"float32", "float16"}, default="float32"
        Storage precision of the codes in the cache.
    precision : {"fp32", "int8", "fp16"}, default="fp32"
        The network's arithmetic: "int8" runs a statically quantized graph (about twice
        as fast on CPUs), "fp16" a half-precision one (for CUDA and TensorRT).
    cache : bool, str or Path, default=True
        True: ``$CNNCODES_CACHE`` or the user cache folder; a path: that folder;
        False: no cache.
    batch_size : int or None, default=None
        Model inputs per inference call; None: 8 on the CPU, 64 on a GPU.
    device : {"auto", "cpu", "cuda", "tensorrt"}, default="auto"
        Execution provider; "auto" tries TensorRT, CUDA, then the CPU.
    n_threads : int or None, default=None
        onnxruntime intra-op threads, one inference call at a time; None: on the CPU, one call per
        core side by side, on one thread each.
    optimization : {"disable", "basic", "extended", "all"}, default="all"
        onnxruntime graph optimization level.
    n_workers : int or None, default=None
        Decode threads; None: every core on a GPU, on the CPU as many as keep up with inference.
    on_error : {"skip", "raise"}, default="raise"
        "raise": a bad image raises, naming the file. "skip": bad images get no
        row; their positions are in ``dropped_indices_`` after ``transform``, so
        keep ``y`` aligned with ``np.delete(y, codes.dropped_indices_)``.

    Attributes
    ----------
    backbone_ : BackboneSpec
        The resolved backbone (picklable, no session).
    layers_ : tuple of str
        The resolved taps (the backbone's default tap when ``layer`` is None).
    n_features_out_ : int
        Length of a code.
    dropped_indices_ : ndarray of int
        Positions of the inputs of the last ``transform`` that failed (``on_error="skip"``).

    Examples
    --------
    >>> import numpy as np
    >>> from cnncodes import CNNCodes
    >>> images = np.full((2, 64, 64, 3), 100, np.uint8)
    >>> CNNCodes(layer="stage4", cache=False).fit_transform(images).shape
    (2, 80)
    """

    def __init__(
        self,
        *,
        model: str = default("model"),
        layer: str | Sequence[str] | None = default("layer"),
        pooling: str = default("pooling"),
        grid: int | None = default("grid"),
        gem_p: float = default("gem_p"),
        relu: bool | None = default("relu"),
        views: str = default("views"),
        decoder: str = default("decoder"),
        combine: str = default("combine"),
        normalize: str = default("normalize"),
        dtype: str = default("dtype"),
        precision: str = default("precision"),
        cache: bool | str | Path = default("cache"),
        batch_size: int | None = default("batch_size"),
        device: str = default("device"),
        n_threads: int | None = default("n_threads"),
        optimization: str = default("optimization"),
        n_workers: int | None = default("n_workers"),
        on_error: str = ESTIMATOR_ON_ERROR,
    ) -> None:
        self.model = model
        self.layer = layer
        self.pooling = pooling
        self.grid = grid
        self.gem_p = gem_p
        self.relu = relu
        self.views = views
        self.decoder = decoder
        self.combine = combine
        self.normalize = normalize
        self.dtype = dtype
        self.precision = precision
        self.cache = cache
        self.batch_size = batch_size
        self.device = device
        self.n_threads = n_threads
        self.optimization = optimization
        self.n_workers = n_workers
        self.on_error = on_error

    def _make_extractor(self) -> Extractor:
        # scikit-learn's rule: parameters are checked in fit, not in __init__. Checked here, before the
        # options convert them (a list layer becomes a tuple), so a message shows the value as the user set it.
        for name in PARAMETERS:
            check_parameter(name, getattr(self, name), owner=type(self).__name__)
        options = ExtractionOptions(**{name: getattr(self, name) for name in CODE_PARAMETERS})
        run = {name: getattr(self, name) for name in RUN_PARAMETERS}
        return Extractor(options, **run, progress=False, owner=type(self).__name__)

    def fit(self, X: Any = None, y: Any = None) -> "CNNCodes":
        """Validate the parameters and resolve the backbone; the CNN is frozen, so no data is needed.

        Parameters
        ----------
        X : ignored
            Accepted for the scikit-learn API.
        y : ignored
            Accepted for the scikit-learn API.

        Returns
        -------
        self : CNNCodes
            Fitted: ``backbone_``, ``layers_`` and ``n_features_out_`` are set.

        Raises
        ------
        InputError
            If a parameter is out of range (also a ``ValueError``).
        UnknownBackboneError, UnknownLayerError
            If the model or a layer does not exist.
        """
        extractor = self._make_extractor()
        self._extractor = extractor
        self.backbone_ = extractor.backbone
        self.layers_ = tuple(extractor.layers)
        self.n_features_out_ = extractor.n_features
        self._feature_names = list(extractor.feature_names())
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Codes of the images in ``X``.

        Parameters
        ----------
        X : sequence of images, one-column DataFrame or ndarray
            Paths, bytes, uint8 arrays or PIL images (see the class docstring).

        Returns
        -------
        ndarray of shape (n_samples, n_features_out_), float32
            One row per image (per good image with ``on_error="skip"``).

        Raises
        ------
        ImageDecodeError
            With ``on_error="raise"``, for the first image that cannot be decoded.
        """
        result = self.extract(X)
        self.dropped_indices_ = np.setdiff1d(np.arange(result.n_images), result.indices).astype(np.int64)
        if len(self.dropped_indices_):
            reasons = "; ".join(f"{path}: {reason}" for path, reason in result.failures[:3])
            message = f"CNNCodes dropped {len(self.dropped_indices_)} of {result.n_images} images ({reasons})"
            warnings.warn(message, UserWarning, stacklevel=2)
        return result.codes

    def extract(self, X: Any) -> ExtractionResult:
        """Codes of ``X`` with their paths, labels, failures and cache statistics.

        Parameters
        ----------
        X : images, a folder, a CSV or a Dataset
            Every form :func:`cnncodes.extract` accepts.

        Returns
        -------
        ExtractionResult
            The codes of the images that worked, and the failures apart.
        """
        check_is_fitted(self, "n_features_out_")
        if getattr(self, "_extractor", None) is None:  # after unpickling: the session is rebuilt lazily
            self._extractor = self._make_extractor()
        return self._extractor.run(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the code dimensions: ``<model>_<layer>_<i>``.

        Parameters
        ----------
        input_features : ignored
            Accepted for the scikit-learn API (the inputs are images, not columns).

        Returns
        -------
        ndarray of str, shape (n_features_out_,)
        """
        check_is_fitted(self, "n_features_out_")
        return np.asarray(self._feature_names, dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X holds images, as a text vectorizer's X holds documents
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: the default state is the instance's own __dict__
        state.pop("_extractor", None)  # holds an onnxruntime session: recreated lazily
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Model files of the first wave hold a CNNCodes without gem_p that called skipping "drop"; those from
        # before the fast decoder, one without decoder whose codes Pillow made.
        defaults = {name: default(name) for name in PARAMETERS}
        state = {**defaults, "on_error": ESTIMATOR_ON_ERROR, "decoder": "exact", **state}
        if state["on_error"] == "drop":
            state["on_error"] = "skip"
        super().__setstate__(state)
