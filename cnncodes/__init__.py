"""cnncodes: frozen ImageNet CNNs under ONNX Runtime turn images into codes for scikit-learn."""

from __future__ import annotations

from .backbones import BackboneSpec, TapSpec, get_backbone, imagenet_class_names, list_backbones, models_dir
from .cache import (
    CodeCache,
    CodesFile,
    cache_info,
    compact_cache,
    default_cache_dir,
    read_codes_file,
    remove_cache,
    verify_cache,
    write_codes_file,
)
from .datasets import Dataset, load_dataset
from .errors import (
    CacheFormatError,
    CnnCodesError,
    DownloadError,
    ImageDecodeError,
    InputError,
    ModelFileError,
    ModelMismatchError,
    ModelMismatchWarning,
    ProviderFallbackWarning,
    UnknownBackboneError,
    UnknownLayerError,
    WeightsFormatError,
)
from .export import EXPORTABLE
from .heads import HEADS, fit_out_of_core, make_head
from .persist import ModelBundle, load_model, save_model
from .report import Report, make_report, write_report
from .training import (
    EvaluationResult,
    Prediction,
    PredictionResult,
    TrainResult,
    evaluate,
    load_labelled_codes,
    predict,
    train,
)
from .sweep import BASELINE, SweepResult, SweepRow, sweep
from .transformer import CNNCodes
from .api import extract
from .extract import ExtractionOptions, ExtractionResult, Extractor
from .images import VIEWS
from .pooling import COMBINES, NORMALIZATIONS, POOLINGS
from .runtime import DEVICES
from .weights import load_state_dict
from .zoo import ensure_model_file, export_model, fetch_model, list_layers, list_models

from .version import VERSION as __version__

__all__ = [
    "__version__",
    "BackboneSpec",
    "TapSpec",
    "get_backbone",
    "list_backbones",
    "models_dir",
    "imagenet_class_names",
    "list_models",
    "list_layers",
    "ensure_model_file",
    "fetch_model",
    "export_model",
    "EXPORTABLE",
    "load_state_dict",
    "extract",
    "CNNCodes",
    "HEADS",
    "make_head",
    "fit_out_of_core",
    "ModelBundle",
    "save_model",
    "load_model",
    "Report",
    "make_report",
    "write_report",
    "train",
    "TrainResult",
    "evaluate",
    "EvaluationResult",
    "predict",
    "Prediction",
    "PredictionResult",
    "load_labelled_codes",
    "sweep",
    "BASELINE",
    "SweepResult",
    "SweepRow",
    "VIEWS",
    "COMBINES",
    "NORMALIZATIONS",
    "POOLINGS",
    "DEVICES",
    "Extractor",
    "ExtractionOptions",
    "ExtractionResult",
    "load_dataset",
    "Dataset",
    "CodeCache",
    "CodesFile",
    "default_cache_dir",
    "read_codes_file",
    "write_codes_file",
    "cache_info",
    "verify_cache",
    "compact_cache",
    "remove_cache",
    "CnnCodesError",
    "UnknownBackboneError",
    "UnknownLayerError",
    "WeightsFormatError",
    "ModelFileError",
    "DownloadError",
    "ImageDecodeError",
    "InputError",
    "CacheFormatError",
    "ModelMismatchError",
    "ProviderFallbackWarning",
    "ModelMismatchWarning",
]
