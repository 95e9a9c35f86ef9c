"""Tests of the restricted .pth reader."""

from __future__ import annotations

import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cnncodes.backbones import lite_weights_path
from cnncodes.errors import WeightsFormatError
from cnncodes.weights import load_state_dict


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_load_state_dict_legacy_matches_torch(name: str) -> None:
    """Check that the legacy-format Lite weights read exactly as torch reads them."""
    path = lite_weights_path(name)
    ours = load_state_dict(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert set(ours) == set(theirs)
    for key, tensor in theirs.items():
        np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=key)


def test_load_state_dict_zip_format_round_trip(tmp_path: Path) -> None:
    """Check that a zip-format file (torch.save today) reads back, including non-contiguous views and dtypes."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "weight": base,
        "transposed": base.t(),  # strides (1, 6) over a shared storage
        "slice": base[1:3, 2:5],
        "ints": torch.tensor([1, 2, 3], dtype=torch.int64),
        "half": torch.linspace(0, 1, 5, dtype=torch.float16),
        "scalar": torch.tensor(7, dtype=torch.int64),
    }
    path = tmp_path / "state.pth"
    torch.save(state, path)
    ours = load_state_dict(path)
    for key, tensor in state.items():
        np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=key)
        assert ours[key].dtype == tensor.numpy().dtype


def test_load_state_dict_unwraps_checkpoint(tmp_path: Path) -> None:
    """Check that a checkpoint dict with a 'state_dict' entry is unwrapped."""
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": {"a": torch.ones(2)}, "epoch": 3}, path)
    assert list(load_state_dict(path)) == ["a"]


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_load_state_dict_refuses_code_execution(tmp_path: Path) -> None:
    """Check that a pickle naming a global outside the allow-list is refused, not run."""
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.ones(1), "payload": _Exploit()}, path)
    expected = f"{path}: refusing to load global 'posix.system'; only plain state dicts of tensors can be read safely"
    with pytest.raises(WeightsFormatError, match=re.escape(expected)):
        load_state_dict(path)


def test_load_state_dict_refuses_legacy_exploit(tmp_path: Path) -> None:
    """Check that the legacy stream is restricted too (an exploit in place of the magic number)."""
    path = tmp_path / "legacy_evil.pth"
    path.write_bytes(pickle.dumps(_Exploit(), protocol=2))
    with pytest.raises(WeightsFormatError, match=re.escape(f"{path}: refusing to load global 'posix.system'")):
        load_state_dict(path)


@pytest.mark.parametrize(
    "content,reason",
    [(b"", "not a PyTorch checkpoint"), (b"hello world", "not a PyTorch checkpoint")],
    ids=["empty", "text"],
)
def test_load_state_dict_rejects_non_checkpoints(tmp_path: Path, content: bytes, reason: str) -> None:
    """Check that files that are not checkpoints get a one-line error naming the file."""
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsFormatError, match=re.escape(f"{path}: {reason}")):
        load_state_dict(path)


def test_load_state_dict_missing_file(tmp_path: Path) -> None:
    """Check that a missing file is named."""
    with pytest.raises(WeightsFormatError, match=re.escape(f"{tmp_path / 'nope.pth'}: no such weights file")):
        load_state_dict(tmp_path / "nope.pth")


class _StorageRef:
    """Stands for storage "0" in a crafted file (written as a persistent id)."""


class _CraftedTensor:
    """A tensor record with any offset, size and stride, as a hostile file could hold."""

    def __init__(self, offset: object, size: object, stride: object) -> None:
        self.args = (offset, size, stride)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (torch._utils._rebuild_tensor_v2, (_StorageRef(), *self.args, False, {}))


def _crafted_legacy(path: Path, tensor: _CraftedTensor, n_stored: int, count: int | None = None) -> Path:
    """A legacy-format .pth of one float tensor over a storage of ``n_stored`` floats (header claims ``count``)."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("storage", torch.FloatStorage, "0", "cpu", n_stored, None) if isinstance(obj, _StorageRef) else None

    with open(path, "wb") as handle:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, handle, protocol=2)
        Pickler(handle, protocol=2).dump({"weight": tensor})
        pickle.dump(["0"], handle, protocol=2)
        handle.write(struct.pack("<q", n_stored if count is None else count))
        handle.write(np.arange(n_stored, dtype=np.float32).tobytes())
    return path


def test_crafted_file_reads_like_torch_when_well_formed(tmp_path: Path) -> None:
    """Check that the crafting helper makes real files: a valid transposed view reads as torch reads it."""
    path = _crafted_legacy(tmp_path / "ok.pth", _CraftedTensor(2, (3, 2), (1, 3)), 10)
    expected = torch.load(path, weights_only=True)["weight"].numpy()
    np.testing.assert_array_equal(load_state_dict(path)["weight"], expected)
    np.testing.assert_array_equal(expected, [[2, 5], [3, 6], [4, 7]])


@pytest.mark.parametrize(
    ("offset", "size", "stride", "reason"),
    [
        (0, (4, 4), (1000000, 1), "reaches element 3000003 of a storage of 16"),  # the stride that segfaulted
        (12, (4,), (1,), "reaches element 15 of a storage of 12"),  # heap memory copied into the weights
        (12, (), (), "reaches element 12 of a storage of 12"),
        (0, (2, 2), (-1, 1), "must be non-negative integers"),
        (-3, (2,), (1,), "must be non-negative integers"),
        (0, (2, 2), (1,), "malformed size"),
        (0, (2,), "ab", "malformed size"),
        (0, (10**6, 10**6), (0, 0), "more than the file can hold"),
        (0, (True, 2), (1, 1), "must be non-negative integers"),
    ],
    ids=[
        "huge-stride",
        "past-the-end",
        "scalar-past-end",
        "negative-stride",
        "negative-offset",
        "rank-mismatch",
        "text-stride",
        "broadcast-bomb",
        "bool-size",
    ],
)
def test_load_state_dict_refuses_views_outside_their_storage(
    tmp_path: Path, offset: object, size: object, stride: object, reason: str
) -> None:
    """Check that every tensor view is bounds-checked against its storage: a one-line error, no crash, no copy."""
    path = _crafted_legacy(tmp_path / "crafted.pth", _CraftedTensor(offset, size, stride), 16 if offset != 12 else 12)
    with pytest.raises(WeightsFormatError, match=re.escape(f"{path}: tensor 'weight': ") + ".*" + re.escape(reason)):
        load_state_dict(path)


def test_load_state_dict_caps_storage_counts_by_the_file_size(tmp_path: Path) -> None:
    """Check that a storage header claiming more elements than the file holds is refused before any allocation."""
    path = _crafted_legacy(tmp_path / "count.pth", _CraftedTensor(0, (2,), (1,)), 4, count=2**60)
    with pytest.raises(WeightsFormatError, match=re.escape(f"{path}: storage 0 claims {2**60} elements, more than")):
        load_state_dict(path)
    negative = _crafted_legacy(tmp_path / "negative.pth", _CraftedTensor(0, (2,), (1,)), 4, count=-1)
    with pytest.raises(WeightsFormatError, match=re.escape(f"{negative}: storage 0 claims -1 elements")):
        load_state_dict(negative)


def test_load_state_dict_cut_files_raise_only_the_format_error(tmp_path: Path) -> None:
    """Check that a real .pth (both formats) cut at many points raises WeightsFormatError, nothing else."""
    zipped = tmp_path / "zip.pth"
    torch.save({"w": torch.arange(300, dtype=torch.float32).reshape(10, 30), "b": torch.ones(3)}, zipped)
    legacy = _crafted_legacy(tmp_path / "legacy.pth", _CraftedTensor(0, (4, 4), (4, 1)), 16)
    cut = tmp_path / "cut.pth"
    for whole in (zipped.read_bytes(), legacy.read_bytes()):
        for size in sorted({*range(0, len(whole), max(1, len(whole) // 150)), len(whole) - 1}):
            cut.write_bytes(whole[:size])
            with pytest.raises(WeightsFormatError, match=re.escape(f"{cut}: ")):
                load_state_dict(cut)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x04\x8e" + struct.pack("<Q", 2**63),
        b"\x80\x04\x8e" + struct.pack("<Q", 2**40),
        b"\x80\x03B\xff\xff\xff\x7f",
    ],
    ids=["bytes8-overflow", "bytes8-huge", "bytes-huge"],
)
def test_load_state_dict_huge_pickle_lengths_allocate_nothing(tmp_path: Path, payload: bytes) -> None:
    """Check pickles claiming huge byte strings (found by mutating real files): a WeightsFormatError, no MemoryError."""
    path = tmp_path / "huge.pth"
    with open(path, "wb") as handle:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, handle, protocol=2)
        handle.write(payload)
    with pytest.raises(WeightsFormatError, match=re.escape(f"{path}: ")):
        load_state_dict(path)


def test_load_state_dict_refuses_encrypted_members(tmp_path: Path) -> None:
    """Check that a zip member flagged as encrypted (a mutated header) is refused, not a RuntimeError."""
    path = tmp_path / "state.pth"
    torch.save({"w": torch.ones(4)}, path)
    data = bytearray(path.read_bytes())
    for signature in (b"PK\x03\x04", b"PK\x01\x02"):  # local and central headers: set bit 0 of the flags
        start = 0
        while (start := data.find(signature, start)) != -1:
            data[start + (6 if signature == b"PK\x03\x04" else 8)] |= 1
            start += 4
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFormatError, match=re.escape(f"{path}: member ") + ".* is encrypted"):
        load_state_dict(path)
