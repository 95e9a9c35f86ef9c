"""Tests of the restricted .pth reader."""

from __future__ import annotations

import pickle
import re
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
