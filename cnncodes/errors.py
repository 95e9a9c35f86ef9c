"""The cnncodes exception and warning hierarchy, and nothing else."""

from __future__ import annotations

__all__ = [
    "CnnCodesError",
    "UnknownBackboneError",
    "UnknownLayerError",
    "WeightsFormatError",
    "ModelFileError",
    "DownloadError",
    "ImageDecodeError",
    "InputError",
    "CacheFormatError",
    "OutputError",
    "MissingExtraError",
    "ModelMismatchError",
    "ProviderFallbackWarning",
    "ModelMismatchWarning",
]


class CnnCodesError(Exception):
    """Base class of every error cnncodes raises on purpose."""


class UnknownBackboneError(CnnCodesError, LookupError):
    """A backbone name that is not in the zoo."""


class UnknownLayerError(CnnCodesError, LookupError):
    """A tap or tensor name that the model does not have."""


class WeightsFormatError(CnnCodesError, ValueError):
    """A weights file that is not a state dict cnncodes can read safely."""


class ModelFileError(CnnCodesError, OSError):
    """An ONNX model file that is missing, unreadable or not what its card says."""


class DownloadError(CnnCodesError, OSError):
    """A download that failed or did not match its checksum."""


class ImageDecodeError(CnnCodesError, ValueError):
    """An image file that cannot be decoded."""


class InputError(CnnCodesError, ValueError):
    """Inputs (folders, lists, CSV files, arrays) that cannot be used."""


class CacheFormatError(CnnCodesError, OSError):
    """A cache or codes file of an unknown, newer or damaged format."""


class OutputError(CnnCodesError, OSError):
    """A file cnncodes was asked to write that cannot be written (full disk, read-only folder); nothing was left."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message  # the storage's words alone ("No space left on device")


class MissingExtraError(CnnCodesError, ImportError):
    """An optional extra (dask, torch, matplotlib) that a feature needs is not installed."""


class ModelMismatchError(CnnCodesError, ValueError):
    """A saved model whose backbone or versions do not match this installation."""


class ProviderFallbackWarning(UserWarning):
    """An execution provider was asked for but another one runs."""


class ModelMismatchWarning(UserWarning):
    """A saved model was written by another version of cnncodes or scikit-learn."""
