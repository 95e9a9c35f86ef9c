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
import pickletools
import struct
import zipfile
import zlib
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
    offset: Any
    size: Any
    stride: Any

    def materialize(self, source: str, name: str, max_elements: int) -> np.ndarray:
        """The tensor as a contiguous array, after checking its view lies inside its storage."""
        assert self.storage.data is not None
        flat = self.storage.data
        offset, size, stride = _checked_view(self, len(flat), max_elements, f"{source}: tensor '{name}'")
        if not size:
            return flat[offset : offset + 1].reshape(()).copy()
        if 0 in size:
            return np.zeros(size, dtype=flat.dtype)
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=tuple(s * itemsize for s in stride))
        return np.ascontiguousarray(view)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _checked_view(
    tensor: _PendingTensor, n_stored: int, max_elements: int, subject: str
) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Offset, size and stride of a tensor, refused unless every element it views is inside its storage."""
    offset, size, stride = tensor.offset, tensor.size, tensor.stride
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        message = f"{subject}: malformed size {size!r} or stride {stride!r}"
        raise WeightsFormatError(message)
    if not (_is_count(offset) and all(map(_is_count, size)) and all(map(_is_count, stride))):
        message = (
            f"{subject}: offset, size and stride must be non-negative integers, got {offset!r}, {size!r}, {stride!r}"
        )
        raise WeightsFormatError(message)
    n_elements = int(np.prod(size, dtype=object)) if size else 1
    if n_elements > max_elements:
        message = f"{subject}: {n_elements} elements, more than the file can hold"
        raise WeightsFormatError(message)
    # The last element a view reaches: offset + sum((size - 1) * stride); an empty view reaches none.
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if n_elements else offset - 1
    if last >= n_stored:
        message = (
            f"{subject}: its view (offset {offset}, size {size}, stride {stride}) reaches element {last} "
            f"of a storage of {n_stored}"
        )
        raise WeightsFormatError(message)
    return offset, size, stride


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _PendingTensor:
    if not isinstance(storage, _Storage):
        message = f"a tensor rebuilt from {type(storage).__name__}, not a storage"
        raise WeightsFormatError(message)
    return _PendingTensor(storage, offset, size, stride)


def _rebuild_parameter(tensor: Any, *_: Any) -> Any:
    return tensor


_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}  # opcodes that store into the memo at an index they name


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allow-listed globals and torch storages."""

    def __init__(self, file: BinaryIO, source: str, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._file = file
        self._source = source
        self._storages = storages

    def load(self) -> Any:
        # CPython's unpickler allocates what a counted bytes or string opcode claims before reading it, and grows
        # its memo to any index a PUT names, so a 200-byte file can ask for gigabytes (found by fuzzing). Walk the
        # opcodes first (that reader reads only what there is) and refuse such counts and memo indices.
        start = self._file.tell()
        try:
            for n_ops, (opcode, argument, _) in enumerate(pickletools.genops(self._file), 1):
                if opcode.name in _MEMO_PUTS and argument > n_ops:
                    message = f"{self._source}: not a PyTorch checkpoint (memo index {argument} past its opcodes)"
                    raise WeightsFormatError(message)
        except (ValueError, EOFError, UnicodeDecodeError) as error:
            message = f"{self._source}: not a PyTorch checkpoint ({error})"
            raise WeightsFormatError(message) from error
        self._file.seek(start)
        return super().load()

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


def _finish(obj: Any, source: str, file_bytes: int) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        message = f"{source}: expected a state dict, found {type(obj).__name__}"
        raise WeightsFormatError(message)
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    state: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if isinstance(value, _PendingTensor):
            if value.storage.data is None:
                message = f"{source}: tensor '{name}' has no storage data"
                raise WeightsFormatError(message)
            # Stride-0 (broadcast) views may hold more elements than their storage, never more than the file has bytes.
            state[str(name)] = value.materialize(source, str(name), max(file_bytes, 1))
    return state


def _storage_array(raw: bytes, dtype: np.dtype, source: str, key: str) -> np.ndarray:
    if len(raw) % dtype.itemsize:
        message = f"{source}: storage {key} holds {len(raw)} bytes, not a whole number of {dtype} elements"
        raise WeightsFormatError(message)
    return np.frombuffer(raw, dtype=dtype)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    source, file_bytes = str(path), path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            message = f"{source}: zip file without data.pkl; not a PyTorch checkpoint"
            raise WeightsFormatError(message)
        prefix = pickles[0][: -len("data.pkl")]
        _check_member_sizes(archive, file_bytes, source)
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as handle:
            obj = _RestrictedUnpickler(io.BytesIO(handle.read()), source, storages).load()
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode().strip()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                message = f"{source}: storage {key} is missing from the archive"
                raise WeightsFormatError(message)
            dtype = np.dtype(storage.dtype).newbyteorder("<" if byteorder == "little" else ">")
            storage.data = _storage_array(archive.read(member), dtype, source, key).astype(storage.dtype)
    return _finish(obj, source, file_bytes)


def _check_member_sizes(archive: zipfile.ZipFile, file_bytes: int, source: str) -> None:
    """torch stores members uncompressed: a member claiming more bytes than the file has is malformed."""
    for info in archive.infolist():
        if info.flag_bits & 0x1:
            message = f"{source}: member {info.filename} is encrypted; not a PyTorch checkpoint"
            raise WeightsFormatError(message)
        if info.file_size > file_bytes:
            message = (
                f"{source}: member {info.filename} claims {info.file_size} bytes, more than the file's {file_bytes}"
            )
            raise WeightsFormatError(message)


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    source, file_bytes = str(path), path.stat().st_size
    # From memory: a crafted pickle length then reads what there is, instead of allocating what it claims.
    with io.BytesIO(path.read_bytes()) as handle:
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
        if not isinstance(keys, list):
            message = f"{source}: the storage key list is a {type(keys).__name__}"
            raise WeightsFormatError(message)
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                message = f"{source}: storage {key} is listed but no tensor uses it"
                raise WeightsFormatError(message)
            header = handle.read(8)
            if len(header) != 8:
                message = f"{source}: truncated storage {key}"
                raise WeightsFormatError(message)
            (count,) = struct.unpack("<q", header)
            itemsize = np.dtype(storage.dtype).itemsize
            if not 0 <= count * itemsize <= file_bytes:  # checked before reading: a crafted count allocates nothing
                message = f"{source}: storage {key} claims {count} elements, more than the file holds"
                raise WeightsFormatError(message)
            raw = handle.read(count * itemsize)
            if len(raw) != count * itemsize:
                message = f"{source}: truncated storage {key}"
                raise WeightsFormatError(message)
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return _finish(obj, source, file_bytes)


# What the pickle machinery raises on a malformed stream (opcodes out of place, wrong argument types).
_MALFORMED = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    struct.error,
    RecursionError,
    UnicodeDecodeError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,  # a deflated member whose compressed bytes are damaged
    NotImplementedError,
    OSError,  # zipfile seeking to an offset a damaged header gives
    MemoryError,
    OverflowError,
)


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
        If the file is not a state dict, is malformed (a tensor view outside its
        storage, a storage larger than the file, a damaged pickle), or its pickle
        names a global outside the allow-list (the sign of a file that would run
        code when loaded by torch).

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
    except _MALFORMED as error:
        message = f"{path}: not a valid PyTorch state dict ({type(error).__name__}: {error})"
        raise WeightsFormatError(message) from error
