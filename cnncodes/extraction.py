"""The public extract function: images in, codes out, in one process or on a dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .cache import CodeCache, write_codes_file
from .distributed import DEFAULT_PARTITION_SIZE, connect, extract_on_cluster
from .engine import ExtractionOptions, ExtractionResult, Extractor
from .params import CODE_PARAMETERS, RUN_PARAMETERS, default

__all__ = ["extract", "ExtractionResult"]


def extract(
    inputs: Any,
    *,
    model: str = default("model"),
    layer: str | Sequence[str] | None = default("layer"),
    pooling: str = default("pooling"),
    grid: int | None = default("grid"),
    gem_p: float = default("gem_p"),
    relu: bool | None = default("relu"),
    views: str = default("views"),
    combine: str = default("combine"),
    normalize: str = default("normalize"),
    dtype: str = default("dtype"),
    cache: CodeCache | Path | str | bool | None = default("cache"),
    batch_size: int | None = default("batch_size"),
    device: str = default("device"),
    n_threads: int | None = default("n_threads"),
    optimization: str = default("optimization"),
    n_workers: int | None = default("n_workers"),
    on_error: str = default("on_error"),
    progress: bool | None = None,
    output: Path | str | None = None,
    client: Any = None,
    partition_size: int | None = DEFAULT_PARTITION_SIZE,
) -> ExtractionResult:
    """Turn images into CNN codes, reading what the cache already holds.

    Parameters
    ----------
    inputs : str, Path, sequence, Series, DataFrame, ndarray, bytes or Dataset
        A folder (one subfolder per class gives labels), a CSV of ``path[,label]``, a
        single image file, a list of image files and folders, a 1-D pandas Series or a
        one-column DataFrame of paths (as ``ColumnTransformer`` passes it), an (n, 1) or
        (n,) array of paths, encoded image files as ``bytes`` objects, an (N, H, W, 3)
        uint8 array, or a list of H x W x 3 uint8 arrays or PIL images.
    model : str, default="efficientnet_lite0"
        A zoo name (``cnncodes models``) or the path of an ``.onnx`` file.
    layer : str, sequence of str or None, default=None
        One tap, or several whose codes are concatenated (``cnncodes layers MODEL``);
        None: the backbone's default tap.
    pooling : {"avg", "max", "gem"}, default="avg"
        Spatial pooling of feature maps.
    grid : int or None, default=None
        Pool each cell of a grid x grid layout (code length x grid**2).
    gem_p : float, default=3.0
        Exponent of GeM pooling (``pooling="gem"`` only).
    relu : bool or None, default=None
        None applies ReLU to pre-activation taps only (see the card's non-negative flag).
    views : {"none", "flip", "5crop", "10crop", "razavian16"}, default="none"
        Test-time views of each image.
    combine : {"mean", "sum", "max", "none"}, default="mean"
        How the views' codes combine; "none" concatenates them.
    normalize : {"none", "l2", "power"}, default="none"
        Per-layer code normalization; "power" is signed square root then L2.
    dtype : {"float32", "float16"}, default="float32"
        Storage precision in the cache.
    cache : bool, str, Path, CodeCache or None, default=True
        True: ``CNNCODES_CACHE`` or the user cache folder; False/None: no cache.
    batch_size : int or None, default=None
        Model inputs per inference call; None: 8 on the CPU, 64 on a GPU.
    device : {"auto", "cpu", "cuda", "tensorrt"}, default="auto"
        Execution provider; "auto" tries TensorRT, CUDA, then the CPU.
    n_threads : int or None, default=None
        onnxruntime intra-op threads (default: every core).
    optimization : {"disable", "basic", "extended", "all"}, default="all"
        onnxruntime graph optimization level.
    n_workers : int or None, default=None
        Decode threads (default: one per core).
    on_error : {"skip", "raise"}, default="skip"
        "skip": a bad image is reported in ``failures`` and gets no row; "raise": stop.
    progress : bool or None, default=None
        Progress line on stderr (default: only on a terminal).
    output : str, Path or None, default=None
        Also write a codes file (HDF5, schema in the README).
    client : dask.distributed.Client, str or None, default=None
        Run on a dask cluster: a Client, a scheduler address, or ``"local:N"`` for a
        local cluster of N worker processes (extra ``dask``). The cache must be a
        folder every worker shares; the result equals a single-process run.
    partition_size : int or None, default=None
        Images per dask task; None: about four tasks per worker, at most 2000.

    Returns
    -------
    ExtractionResult
        ``codes`` (n_ok, n_features) float32 aligned with ``paths``, ``labels``
        and ``indices``; ``failures`` as (path, reason).

    Raises
    ------
    InputError, UnknownBackboneError, UnknownLayerError
        Before any work, for a missing input, unknown model or layer, bad option.
    ImageDecodeError
        With ``on_error="raise"``, at the first bad image.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.full((2, 64, 64, 3), 128, np.uint8)
    >>> result = extract(images, cache=False, progress=False)
    >>> result.codes.shape, result.paths
    ((2, 1280), ['<array 0>', '<array 1>'])
    """
    given = locals()
    options = ExtractionOptions(**{name: given[name] for name in CODE_PARAMETERS})
    extractor = Extractor(options, progress=progress, **{name: given[name] for name in RUN_PARAMETERS})
    if client is None:
        result = extractor.run(inputs)
    else:
        with connect(client) as connected:
            result = extractor.finish(extract_on_cluster(extractor, inputs, connected, partition_size=partition_size))
    if output is not None:
        write_codes_file(output, result.to_codes_file())
    return result
