"""cnncodes: frozen ImageNet CNNs under ONNX Runtime turn images into codes for scikit-learn.

The public line is ``__all__``. Names are imported on first use (PEP 562), so
``import cnncodes`` and ``cnncodes --help`` load no onnxruntime, onnx, h5py,
scikit-learn or matplotlib until a function needs them.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .errors import (
    CacheFormatError,
    CnnCodesError,
    DownloadError,
    ImageDecodeError,
    InputError,
    MissingExtraError,
    ModelFileError,
    ModelMismatchError,
    ModelMismatchWarning,
    ProviderFallbackWarning,
    UnknownBackboneError,
    UnknownLayerError,
    WeightsFormatError,
)
from .version import VERSION as __version__

# public name -> the module that defines it
_LAZY = {
    # extraction
    "extract": "extraction",
    "ExtractionResult": "extraction",
    "CNNCodes": "transformer",
    "load_dataset": "datasets",
    "Dataset": "datasets",
    # training, evaluation, prediction
    "make_head": "heads",
    "train": "training",
    "TrainResult": "training",
    "evaluate": "evaluation",
    "EvaluationResult": "evaluation",
    "predict": "prediction",
    "Prediction": "prediction",
    "PredictionResult": "prediction",
    "sweep": "sweep",
    "SweepResult": "sweep",
    "Report": "report",
    "ModelBundle": "persist",
    "save_model": "persist",
    "load_model": "persist",
    # the zoo
    "BackboneSpec": "backbones",
    "TapSpec": "backbones",
    "list_backbones": "backbones",
    "get_backbone": "backbones",
    "imagenet_class_names": "backbones",
    "list_models": "modelfiles",
    "list_layers": "modelfiles",
    "fetch_model": "modelfiles",
    "export_model": "modelfiles",
    "load_state_dict": "weights",
    # the cache and where files live
    "CodeCache": "cache",
    "CodesFile": "cache",
    "read_codes_file": "cache",
    "write_codes_file": "cache",
    "cache_info": "cache",
    "verify_cache": "cache",
    "compact_cache": "cache",
    "remove_cache": "cache",
    "default_cache_dir": "paths",
    "models_dir": "paths",
}

__all__ = [
    "__version__",
    *_LAZY,
    "CnnCodesError",
    "UnknownBackboneError",
    "UnknownLayerError",
    "WeightsFormatError",
    "ModelFileError",
    "DownloadError",
    "ImageDecodeError",
    "InputError",
    "CacheFormatError",
    "MissingExtraError",
    "ModelMismatchError",
    "ProviderFallbackWarning",
    "ModelMismatchWarning",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        message = f"module 'cnncodes' has no attribute {name!r}"
        raise AttributeError(message)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Facade(types.ModuleType):
    """The package module: a submodule named like its public function (``sweep``) does not replace the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        # Loading cnncodes.sweep makes the import system set the package attribute 'sweep' to the submodule
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == name and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Facade


if TYPE_CHECKING:  # static type checkers and IDEs see the real imports
    from .backbones import BackboneSpec, TapSpec, get_backbone, imagenet_class_names, list_backbones
    from .cache import (
        CodeCache,
        CodesFile,
        cache_info,
        compact_cache,
        read_codes_file,
        remove_cache,
        verify_cache,
        write_codes_file,
    )
    from .datasets import Dataset, load_dataset
    from .evaluation import EvaluationResult, evaluate
    from .extraction import ExtractionResult, extract
    from .heads import make_head
    from .modelfiles import export_model, fetch_model, list_layers, list_models
    from .paths import default_cache_dir, models_dir
    from .persist import ModelBundle, load_model, save_model
    from .prediction import Prediction, PredictionResult, predict
    from .report import Report
    from .sweep import SweepResult, sweep
    from .training import TrainResult, train
    from .transformer import CNNCodes
    from .weights import load_state_dict
