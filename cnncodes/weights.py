"""Restricted reader of PyTorch ``.pth`` state dicts into numpy arrays, without torch.

Both of PyTorch's formats are read: the zip format (``torch.save`` since 1.6: a zip
holding ``data.pkl`` and one raw file per storage) and the legacy stream (a pickled
magic number, protocol version and system info, the state-dict pickle, a pickled list
of storage keys, then each storage as an 8-byte element count and its raw bytes).
Only the few globals a state dict needs may be named by the pickle, so a malicious
file cannot run code: anything else is refused with :class:`WeightsFormatError`.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import WeightsFormatError

__all__ = ["load_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_REBUILDERS = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter"}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _Storage:
    dtype: type
    key: str
    data: np.ndarray | None = None  # filled once the raw bytes are read


@dataclass
class _PendingTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        assert self.storage.data is not None
        flat = self.storage.data
        if not self.size:
            return flat[self.offset : self.offset + 1].reshape(()).copy()
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _PendingTensor:
    return _PendingTensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(tensor: _PendingTensor, *_: Any) -> _PendingTensor:
    return tensor


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allow-listed globals and torch storages."""

    def __init__(self, file: BinaryIO, source: str, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._source = source
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in _REBUILDERS:
            return _rebuild_parameter if name == "_rebuild_parameter" else _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        message = (
            f"{self._source}: refusing to load global '{module}.{name}'; only plain state dicts "
            "of tensors can be read safely"
        )
        raise WeightsFormatError(message)

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            message = f"{self._source}: unexpected persistent id {pid!r}"
            raise WeightsFormatError(message)
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            message = f"{self._source}: unsupported storage type {storage_type!r}"
            raise WeightsFormatError(message)
        if len(pid) > 5 and pid[5] is not None:
            message = f"{self._source}: storage views are not supported"
            raise WeightsFormatError(message)
        return self._storages.setdefault(key, _Storage(storage_type.dtype, key))


def _plain_load(file: BinaryIO, source: str) -> Any:
    """Unpickle a header value: no globals and no persistent ids allowed."""
    return _RestrictedUnpickler(file, source, {}).load()


def _finish(obj: Any, source: str) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        message = f"{source}: expected a state dict, found {type(obj).__name__}"
        raise WeightsFormatError(message)
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    state: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if isinstance(value, _PendingTensor):
            state[str(name)] = value.materialize()
    return state


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    source = str(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            message = f"{source}: zip file without data.pkl; not a PyTorch checkpoint"
            raise WeightsFormatError(message)
        prefix = pickles[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as handle:
            obj = _RestrictedUnpickler(io.BytesIO(handle.read()), source, storages).load()
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        for key, storage in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            dtype = np.dtype(storage.dtype).newbyteorder("<" if byteorder == "little" else ">")
            storage.data = np.frombuffer(raw, dtype=dtype).astype(storage.dtype)
    return _finish(obj, source)


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    source = str(path)
    with open(path, "rb") as handle:
        try:
            magic = _plain_load(handle, source)
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            message = f"{source}: not a PyTorch checkpoint ({error})"
            raise WeightsFormatError(message) from error
        if magic != _LEGACY_MAGIC:
            message = f"{source}: not a PyTorch checkpoint (bad magic number)"
            raise WeightsFormatError(message)
        protocol = _plain_load(handle, source)
        if protocol != _LEGACY_PROTOCOL:
            message = f"{source}: unsupported legacy protocol version {protocol!r}"
            raise WeightsFormatError(message)
        _plain_load(handle, source)  # system info: endianness and type sizes
        storages: dict[str, _Storage] = {}
        obj = _RestrictedUnpickler(handle, source, storages).load()
        keys = _plain_load(handle, source)
        for key in keys:
            storage = storages[str(key)]
            (count,) = struct.unpack("<q", handle.read(8))
            itemsize = np.dtype(storage.dtype).itemsize
            raw = handle.read(count * itemsize)
            if len(raw) != count * itemsize:
                message = f"{source}: truncated storage {key}"
                raise WeightsFormatError(message)
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return _finish(obj, source)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict into numpy arrays without torch and without running code.

    Parameters
    ----------
    path : str or Path
        A ``.pth``/``.pt`` file written by ``torch.save(model.state_dict())`` in the
        zip format or the legacy (pre-1.6) format. A checkpoint dict with a
        ``"state_dict"`` entry is unwrapped.

    Returns
    -------
    dict of str to numpy.ndarray
        Every tensor of the state dict, by name, as a contiguous array.

    Raises
    ------
    WeightsFormatError
        If the file is not a state dict, or its pickle names a global outside the
        allow-list (the sign of a file that would run code when loaded by torch).

    Examples
    --------
    >>> from cnncodes.backbones import lite_weights_path
    >>> state = load_state_dict(lite_weights_path("efficientnet_lite0"))
    >>> state["_conv_stem.weight"].shape
    (32, 3, 3, 3)
    """
    path = Path(path)
    if not path.is_file():
        message = f"{path}: no such weights file"
        raise WeightsFormatError(message)
    try:
        return _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except WeightsFormatError:
        raise
    except Exception as error:  # any other damage (found by fuzzing: tests/test_fuzz.py) is this file's one line
        message = f"{path}: not a readable PyTorch state dict ({type(error).__name__}: {error})"
        raise WeightsFormatError(message) from error
