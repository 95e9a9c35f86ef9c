"""Tests of find_duplicates: edited copies of real photos, byte-identical chest X-rays, grouping, the threshold."""

from __future__ import annotations

import collections
import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from cnncodes import find_duplicates
from cnncodes.duplicates import contrast, group_pairs
from cnncodes.errors import InputError
from tests.conftest import CHEST_XRAY, HYMENOPTERA


def _versions(source: Path, folder: Path, stem: str) -> list[str]:
    """The photo and five edited copies of it: same bytes, JPEG q20, half size, 80% crop, brighter, rotated 5°."""
    image = Image.open(source).convert("RGB")
    width, height = image.size
    shutil.copyfile(source, folder / f"{stem}_a_original.jpg")
    shutil.copyfile(source, folder / f"{stem}_b_copy.jpg")
    image.save(folder / f"{stem}_c_jpeg20.jpg", quality=20)
    image.resize((width // 2, height // 2)).save(folder / f"{stem}_d_half.jpg")
    image.crop((width // 10, height // 10, width * 9 // 10, height * 9 // 10)).save(folder / f"{stem}_e_crop.jpg")
    ImageEnhance.Brightness(image).enhance(1.4).save(folder / f"{stem}_f_bright.jpg")
    image.rotate(5, resample=Image.Resampling.BICUBIC).save(folder / f"{stem}_g_rotate5.jpg")
    return sorted(str(p) for p in folder.glob(f"{stem}_*.jpg"))


def test_find_duplicates_groups_edited_copies_of_real_photos(default_backbone: Path, tmp_path: Path) -> None:
    """Check that each photo's copies (bytes, re-encode, resize, crop, brightness, rotation) form its one group."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))
    expected = [_versions(photo, folder, f"p{i}") for i, photo in enumerate(photos[:3])]
    for i, other in enumerate(sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:12]):
        shutil.copyfile(other, folder / f"z{i:02d}.jpg")
    found = find_duplicates(folder, cache=tmp_path / "cache", progress=False)
    assert found.groups == expected
    assert found.n_images == 33 and found.failures == [] and found.as_dict() == {"groups": expected}


def _byte_identical_groups(folder: Path) -> list[list[str]]:
    by_hash = collections.defaultdict(list)
    for path in sorted(folder.rglob("*.jpeg")):
        by_hash[hashlib.sha256(path.read_bytes()).hexdigest()].append(str(path))
    return sorted((group for group in by_hash.values() if len(group) > 1), key=lambda g: g[0])


def test_find_duplicates_finds_byte_identical_chest_xrays(default_backbone: Path, tmp_path: Path) -> None:
    """Check that the byte-identical files of chest_xray's train split are grouped, and no distinct X-rays join."""
    identical = _byte_identical_groups(CHEST_XRAY / "train")
    assert len(identical) >= 20  # the data set's known duplicates
    others = sorted((CHEST_XRAY / "train" / "NORMAL").glob("*.jpeg"))[:40]
    inputs = sorted({*[p for group in identical for p in group], *map(str, others)})
    found = find_duplicates(inputs, cache=tmp_path / "cache", progress=False)
    assert found.groups == sorted(identical, key=lambda g: inputs.index(g[0]))


def test_find_duplicates_threshold_one_keeps_only_identical(default_backbone: Path, tmp_path: Path) -> None:
    """Check that threshold=1 links only identical files, and a lower threshold finds the edited copies too."""
    folder = tmp_path / "photos"
    folder.mkdir()
    versions = _versions(sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[3], folder, "p")
    strict = find_duplicates(folder, threshold=1.0, cache=tmp_path / "cache", progress=False)
    assert strict.groups == [versions[:2]] and strict.threshold == 1.0
    assert find_duplicates(folder, threshold=0.3, cache=tmp_path / "cache", progress=False).groups == [versions]


@pytest.mark.parametrize("threshold", [0, 1.5, -0.2, True], ids=["zero", "above-one", "negative", "bool"])
def test_find_duplicates_bad_threshold_is_one_line(threshold: object) -> None:
    """Check that a threshold outside (0, 1] is refused before any work, naming the parameter."""
    expected = f"The 'threshold' parameter must be a number in (0, 1]. Got {threshold!r} instead."
    with pytest.raises(InputError, match=re.escape(expected)):
        find_duplicates(["no/such/folder"], threshold=threshold)


def test_find_duplicates_missing_input_is_one_line(tmp_path: Path) -> None:
    """Check that a missing folder is refused in one line naming it."""
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'nowhere'}: no such file or folder")):
        find_duplicates(tmp_path / "nowhere")


def test_group_pairs_is_transitive_and_ordered() -> None:
    """Check that linked items form one group through chains, singletons are left out, groups are ordered."""
    pairs = np.array([[5, 2], [2, 7], [0, 9], [7, 5], [3, 3]])
    assert group_pairs(10, pairs) == [[0, 9], [2, 5, 7]]
    assert group_pairs(3, np.empty((0, 2), np.int64)) == []


def test_contrast_of_identical_codes_at_a_saturated_background() -> None:
    """Check that contrast is 1 for identical codes even where the background is 1 (no division by zero)."""
    values = contrast(np.array([1.0, 0.99, 0.75]), np.array([1.0, 1.0, 0.5]))
    assert values.tolist() == [1.0, 0.0, 0.5]
