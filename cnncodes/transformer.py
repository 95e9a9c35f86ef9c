"""CNNCodes: the scikit-learn face of extraction (images in, float32 codes out)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .engine import ExtractionOptions, ExtractionResult, Extractor

__all__ = ["CNNCodes"]

_ON_ERROR = ("raise", "drop")


class CNNCodes(TransformerMixin, BaseEstimator):
    """Turn images into CNN codes of a frozen ImageNet backbone, as a scikit-learn transformer.

    ``X`` is a sequence of images: paths, H x W x 3 uint8 arrays or PIL images (or
    an N x H x W x 3 uint8 array). Codes are cached by image content and feature
    set, so refitting, cross-validation and grid searches compute each image's
    codes at most once per feature set.

    Parameters
    ----------
    model : str, default="efficientnet_lite0"
        Zoo backbone (``cnncodes models``) or path of an ``.onnx`` file.
    layer : str or tuple of str, default="penultimate"
        Tap, or taps whose codes are concatenated.
    pooling : {"avg", "max", "gem"}, default="avg"
    grid : int or None, default=None
        Pool on a grid x grid layout.
    relu : bool or None, default=None
        None: ReLU on pre-activation taps only.
    views : {"none", "flip", "5crop", "10crop", "razavian16"}, default="none"
    combine : {"mean", "sum", "max", "none"}, default="mean"
    normalize : {"none", "l2", "power"}, default="none"
    dtype : {"float32", "float16"}, default="float32"
        Storage precision in the cache.
    batch_size : int or None, default=None
        None: 8 on the CPU, 64 on a GPU.
    device : {"auto", "cpu", "cuda", "tensorrt"}, default="auto"
    n_threads : int or None, default=None
        onnxruntime intra-op threads (None: every core).
    optimization : {"disable", "basic", "extended", "all"}, default="all"
        onnxruntime graph optimization level.
    cache : bool or str, default=True
        True: ``CNNCODES_CACHE`` or the user cache folder; a path: that folder;
        False: no cache.
    on_error : {"raise", "drop"}, default="raise"
        "raise": a bad image raises, naming the file. "drop": bad images get no
        row; their positions are in ``dropped_indices_`` after ``transform``, so
        keep ``y`` aligned with ``np.delete(y, codes.dropped_indices_)``.
    n_workers : int or None, default=None
        Decode threads.

    Attributes
    ----------
    backbone_ : BackboneSpec
        The resolved backbone (picklable, no session).
    n_features_out_ : int
        Length of a code.
    dropped_indices_ : ndarray of int
        Positions of the inputs of the last ``transform`` that failed (``on_error="drop"``).

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
        model: str = "efficientnet_lite0",
        layer: str | tuple[str, ...] = "penultimate",
        pooling: str = "avg",
        grid: int | None = None,
        relu: bool | None = None,
        views: str = "none",
        combine: str = "mean",
        normalize: str = "none",
        dtype: str = "float32",
        batch_size: int | None = None,
        device: str = "auto",
        n_threads: int | None = None,
        optimization: str = "all",
        cache: bool | str | Path = True,
        on_error: str = "raise",
        n_workers: int | None = None,
    ) -> None:
        self.model = model
        self.layer = layer
        self.pooling = pooling
        self.grid = grid
        self.relu = relu
        self.views = views
        self.combine = combine
        self.normalize = normalize
        self.dtype = dtype
        self.batch_size = batch_size
        self.device = device
        self.n_threads = n_threads
        self.optimization = optimization
        self.cache = cache
        self.on_error = on_error
        self.n_workers = n_workers

    def _options(self) -> ExtractionOptions:
        layer = self.layer if isinstance(self.layer, str) else tuple(self.layer)
        return ExtractionOptions(
            model=self.model,
            layer=layer,
            pooling=self.pooling,
            grid=self.grid,
            relu=self.relu,
            views=self.views,
            combine=self.combine,
            normalize=self.normalize,
            dtype=self.dtype,
        )

    def _make_extractor(self) -> Extractor:
        if self.on_error not in _ON_ERROR:
            message = (
                f"The 'on_error' parameter of CNNCodes must be one of 'raise', 'drop'. Got {self.on_error!r} instead."
            )
            raise ValueError(message)
        return Extractor(
            self._options(),
            cache=self.cache,
            batch_size=self.batch_size,
            device=self.device,
            n_threads=self.n_threads,
            optimization=self.optimization,
            n_workers=self.n_workers,
            on_error="raise" if self.on_error == "raise" else "skip",
            progress=False,
            owner=type(self).__name__,
        )

    def fit(self, X: Any = None, y: Any = None) -> "CNNCodes":
        """Validate the parameters and resolve the backbone; the CNN is frozen, so no data is needed.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self : CNNCodes
        """
        extractor = self._make_extractor()
        self._extractor = extractor
        self.backbone_ = extractor.backbone
        self.n_features_out_ = extractor.n_features
        self._feature_names = extractor.feature_names()
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Codes of the images in ``X``.

        Parameters
        ----------
        X : sequence of str, Path, ndarray or PIL images, or ndarray (n, h, w, 3) uint8

        Returns
        -------
        ndarray of shape (n_samples, n_features_out_), float32
            One row per image (per good image with ``on_error="drop"``).

        Raises
        ------
        ImageDecodeError
            With ``on_error="raise"``, for the first image that cannot be decoded.
        """
        result = self.extract(X)
        self.dropped_indices_ = np.setdiff1d(np.arange(result.n_images), result.indices).astype(np.int64)
        if len(self.dropped_indices_):
            reasons = "; ".join(f"{path}: {reason}" for path, reason in result.failures[:3])
            warnings.warn(
                f"CNNCodes dropped {len(self.dropped_indices_)} of {result.n_images} images ({reasons})",
                UserWarning,
                stacklevel=2,
            )
        return result.codes

    def extract(self, X: Any) -> ExtractionResult:
        """Codes of ``X`` with their paths, labels, failures and cache statistics.

        Parameters
        ----------
        X : sequence of images, a folder, a CSV or a Dataset
            As :func:`cnncodes.extract` accepts them.

        Returns
        -------
        ExtractionResult
        """
        check_is_fitted(self, "n_features_out_")
        if getattr(self, "_extractor", None) is None:  # after unpickling
            self._extractor = self._make_extractor()
        if isinstance(X, (str, Path)) and not Path(X).is_dir() and Path(X).suffix.lower() != ".csv":
            X = [X]
        return self._extractor.run(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the code dimensions: ``<model>_<layer>_<i>``.

        Returns
        -------
        ndarray of str, shape (n_features_out_,)
        """
        check_is_fitted(self, "n_features_out_")
        return np.asarray(self._feature_names, dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_extractor", None)  # holds an onnxruntime session: recreated lazily
        return state
