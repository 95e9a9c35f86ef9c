"""cnncodes: frozen ImageNet CNNs under ONNX Runtime turn images into codes for scikit-learn.

The public line is ``__all__``. Names are imported on first use (PEP 562), so
``import cnncodes`` and ``cnncodes --help`` load no onnxruntime, onnx, h5py,
scikit-learn or matplotlib until a function needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import errors as _errors
from .errors import *  # noqa: F403  (the hierarchy is public as a whole)
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
    "sweep": "selection",
    "SweepResult": "selection",
    # search: the backbone's own labels, similar images, near-duplicates
    "classify": "labels",
    "similar": "similarity",
    "SimilarityResult": "similarity",
    "CodeIndex": "codeindex",
    "find_duplicates": "duplicates",
    "DuplicateGroups": "duplicates",
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
    "CodesFile": "codesfile",
    "read_codes_file": "codesfile",
    "write_codes_file": "codesfile",
    "cache_info": "cacheops",
    "verify_cache": "cacheops",
    "compact_cache": "cacheops",
    "remove_cache": "cacheops",
    "default_cache_dir": "paths",
    "models_dir": "paths",
}

__all__ = ["__version__", *_LAZY, *_errors.__all__]


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


if TYPE_CHECKING:  # static type checkers and IDEs see the real imports
    from .backbones import BackboneSpec, TapSpec, get_backbone, imagenet_class_names, list_backbones
    from .cache import CodeCache
    from .cacheops import cache_info, compact_cache, remove_cache, verify_cache
    from .codesfile import CodesFile, read_codes_file, write_codes_file
    from .codeindex import CodeIndex
    from .datasets import Dataset, load_dataset
    from .duplicates import DuplicateGroups, find_duplicates
    from .evaluation import EvaluationResult, evaluate
    from .extraction import ExtractionResult, extract
    from .heads import make_head
    from .labels import classify
    from .modelfiles import export_model, fetch_model, list_layers, list_models
    from .paths import default_cache_dir, models_dir
    from .persist import ModelBundle, load_model, save_model
    from .prediction import Prediction, PredictionResult, predict
    from .report import Report
    from .selection import SweepResult, sweep
    from .similarity import SimilarityResult, similar
    from .training import TrainResult, train
    from .transformer import CNNCodes
    from .weights import load_state_dict
