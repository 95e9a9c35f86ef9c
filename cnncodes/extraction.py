"""The public extract function: images in, codes out, in one process or on a dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .codesfile import write_codes_file
from .fileio import refuse_overwriting_an_input
from .distributed import DEFAULT_PARTITION_SIZE, connect, extract_on_cluster
from .engine import ExtractionOptions, ExtractionResult, Extractor
from .pages import write_extraction_page
from .params import CODE_PARAMETERS, PARAMETERS, ExtractParameters

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["extract", "ExtractionResult"]


def extract(
    inputs: Any,
    *,
    progress: bool | None = None,
    output: Path | str | None = None,
    client: Any = None,
    partition_size: int | None = DEFAULT_PARTITION_SIZE,
    report_dir: Path | str | None = None,
    **parameters: Unpack[ExtractParameters],
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
    **parameters : code and run parameters
        Each declared once in :mod:`cnncodes.params` (default, allowed values) and taken by
        :class:`cnncodes.CNNCodes` under the same name:

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
        decoder : {"fast", "exact"}, default="fast"
            "fast": JPEGs decoded by libjpeg-turbo and crops resized by OpenCV (the same
            accuracy as "exact", about half its CPU time; README, Speed); "exact": Pillow's
            decoding and resizing, the codes of earlier versions.
        combine : {"mean", "sum", "max", "none"}, default="mean"
            How the views' codes combine; "none" concatenates them.
        normalize : {"none", "l2", "power"}, default="none"
            Per-layer code normalization; "power" is signed square root then L2.
        dtype : {"float32", "float16"}, default="float32"
            Storage precision in the cache.
        precision : {"fp32", "int8", "fp16"}, default="fp32"
            The network's arithmetic: "int8" runs a statically quantized graph (about twice
            as fast on CPUs; built once on a fixed image set), "fp16" a half-precision one
            (for CUDA and TensorRT). Codes of each precision are a feature set of their own.
        cache : bool, str, Path, CodeCache or None, default=True
            True: ``CNNCODES_CACHE`` or the user cache folder; False/None: no cache.
        batch_size : int or None, default=None
            Model inputs per inference call; None: 8 on the CPU, 64 on a GPU.
        device : {"auto", "cpu", "cuda", "tensorrt"}, default="auto"
            Execution provider; "auto" tries TensorRT, CUDA, then the CPU.
        n_threads : int or None, default=None
            onnxruntime intra-op threads, one inference call at a time (default: on the CPU,
            one call per core side by side, on one thread each).
        optimization : {"disable", "basic", "extended", "all"}, default="all"
            onnxruntime graph optimization level.
        n_workers : int or None, default=None
            Decode threads (default: every core on a GPU; on the CPU as many as keep up with inference).
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
    report_dir : str, Path or None, default=None
        Also write ``index.html`` there: a map of the codes, each class's most and
        least typical images (nearest to / farthest from the class mean), the failures.

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
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        message = f"extract() got an unexpected keyword argument {unknown[0]!r}"
        raise TypeError(message)
    given = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if output is not None:  # the files named: before the work; the images found in folders: before the write
        refuse_overwriting_an_input(output, given)
    code = {name: value for name, value in parameters.items() if name in CODE_PARAMETERS}
    run = {name: value for name, value in parameters.items() if name not in CODE_PARAMETERS}
    extractor = Extractor(ExtractionOptions(**code), progress=progress, **run)
    if client is None:
        result = extractor.run(inputs)
    else:
        with connect(client) as connected:
            result = extractor.finish(extract_on_cluster(extractor, inputs, connected, partition_size=partition_size))
    if output is not None:
        refuse_overwriting_an_input(output, [*given, *result.paths, *(path for path, _ in result.failures)])
        write_codes_file(output, result.to_codes_file())
    if report_dir is not None:
        write_extraction_page(report_dir, result)
    return result
