"""Tests of dataset discovery: class folders, flat folders, CSV files and lists of files and folders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from cnncodes.datasets import load_dataset
from cnncodes.errors import InputError


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _relative(paths: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_load_dataset_class_folders(tmp_path: Path) -> None:
    """Check that subfolders are classes (sorted), images below them are found recursively, other files and hidden
    entries are skipped."""
    _touch(tmp_path, "bees/b.PNG", "ants/x/deep.jpeg", "ants/a.jpg", "ants/notes.txt", "ants/.hidden.jpg")
    _touch(tmp_path, ".cache/c.jpg", "loose.jpg")
    dataset = load_dataset(tmp_path)
    assert _relative(dataset.paths, tmp_path) == ["ants/a.jpg", "ants/x/deep.jpeg", "bees/b.PNG"]
    assert dataset.labels.tolist() == [0, 0, 1] and dataset.class_names == ["ants", "bees"]


def test_load_dataset_flat_folder_is_unlabelled(tmp_path: Path) -> None:
    """Check that a folder without subfolders gives its images, sorted, without labels."""
    _touch(tmp_path, "b.webp", "a.tif", "c.txt")
    dataset = load_dataset(str(tmp_path))
    assert _relative(dataset.paths, tmp_path) == ["a.tif", "b.webp"]
    assert dataset.labels is None and dataset.class_names is None and len(dataset) == 2


@pytest.mark.parametrize(
    "text",
    ["path,label\nimg/a.jpg,cat\n\nimg/b.jpg, dog\n{absolute},cat\n", "img/a.jpg,cat\nimg/b.jpg,dog\n{absolute},cat"],
    ids=["header-and-blank-line", "no-header"],
)
def test_load_dataset_csv_with_labels(tmp_path: Path, text: str) -> None:
    """Check that CSV paths are relative to the CSV's folder (or absolute) and labels become sorted classes."""
    absolute = tmp_path / "elsewhere" / "c.jpg"
    csv_path = tmp_path / "lists" / "train.csv"
    csv_path.parent.mkdir()
    csv_path.write_text(text.format(absolute=absolute))
    dataset = load_dataset(csv_path)
    assert dataset.paths == [csv_path.parent / "img/a.jpg", csv_path.parent / "img/b.jpg", absolute]
    assert dataset.labels.tolist() == [0, 1, 0] and dataset.class_names == ["cat", "dog"]


def test_load_dataset_csv_without_labels(tmp_path: Path) -> None:
    """Check that a one-column CSV gives paths without labels."""
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path\na.jpg\nb.jpg\n")
    dataset = load_dataset(csv_path)
    assert dataset.paths == [tmp_path / "a.jpg", tmp_path / "b.jpg"] and dataset.labels is None


@pytest.mark.parametrize(
    "text,problem",
    [
        ("path,label\n", "no rows; expected 'path[,label]' lines"),
        ("a.jpg,cat,extra\n", "expected 1 or 2 columns (path[,label]), found rows of [3] columns"),
        ("path,label\na.jpg,cat\n\nb.jpg\n", "line 4 has no label but line 2 has one; label every row or none"),
        ("a.jpg,cat\nb.jpg, \n", "line 2 has no label but line 1 has one; label every row or none"),
        ("a.jpg\nb.jpg,dog\n", "line 1 has no label but line 2 has one; label every row or none"),
        ("a.jpg," + "x" * 140_000, "not a CSV file (field larger than field limit (131072))"),
    ],
    ids=["empty", "three-columns", "a-row-without-label", "an-empty-label", "first-row-unlabelled", "huge-field"],
)
def test_load_dataset_malformed_csv(tmp_path: Path, text: str, problem: str) -> None:
    """Check that a malformed CSV is one line naming the file and the problem."""
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(text)
    with pytest.raises(InputError, match="^" + re.escape(f"{csv_path}: {problem}") + "$"):
        load_dataset(csv_path)


def test_load_dataset_list_of_files_and_folders(tmp_path: Path) -> None:
    """Check that a list expands folders, keeps files in order, and lets a missing image file through."""
    _touch(tmp_path, "more/y.jpg", "more/x.jpg", "one.png")
    missing = tmp_path / "gone.jpg"  # becomes a per-image failure later, not an error here
    dataset = load_dataset([tmp_path / "one.png", tmp_path / "more", missing])
    assert dataset.paths == [tmp_path / "one.png", tmp_path / "more/x.jpg", tmp_path / "more/y.jpg", missing]


@pytest.mark.parametrize("name", ["nope", "nope.jpg", "nope.txt"])
def test_load_dataset_missing_source(tmp_path: Path, name: str) -> None:
    """Check that a missing single source, or a missing non-image in a list, is one line naming it."""
    with pytest.raises(InputError, match="^" + re.escape(f"{tmp_path / name}: no such file or folder") + "$"):
        load_dataset(tmp_path / name)
    if name == "nope.txt":
        with pytest.raises(InputError, match="^" + re.escape(f"{tmp_path / name}: no such file or folder") + "$"):
            load_dataset([tmp_path / name, tmp_path / "also.jpg"])


def test_load_dataset_csv_from_excel_with_a_byte_order_mark(tmp_path: Path) -> None:
    """Check that a UTF-8 CSV with a BOM (as Excel saves it) has its header recognised and its paths exact."""
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes("path,label\r\nbée.jpg,cat\r\n".encode("utf-8-sig"))
    dataset = load_dataset(csv_path)
    assert dataset.paths == [tmp_path / "bée.jpg"] and dataset.class_names == ["cat"]


def test_load_dataset_csv_in_latin1_is_one_line(tmp_path: Path) -> None:
    """Check that a CSV that is not UTF-8 (latin-1) is one line naming the file, the byte and its line."""
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes("path,label\na.jpg,cat\nb\u00e9e.jpg,dog\n".encode("latin-1"))
    message = f"{csv_path}: not UTF-8 text (byte 0xe9 on line 3); save it as UTF-8"
    with pytest.raises(InputError, match="^" + re.escape(message) + "$"):
        load_dataset(csv_path)


def test_load_dataset_keeps_broken_symlinks_and_loops_of_a_class_folder(tmp_path: Path) -> None:
    """Check that a broken symlink and a symlink loop with image names stay in the dataset (to fail by name later),
    while a symlinked folder inside a class is not a file."""
    _touch(tmp_path, "ants/a.jpg")
    (tmp_path / "ants/gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "ants/loop.jpg").symlink_to(tmp_path / "ants/loop.jpg")
    (tmp_path / "ants/pipe.png").symlink_to(tmp_path / "ants/a.jpg")
    (tmp_path / "ants/folder.jpg").mkdir()
    dataset = load_dataset(tmp_path)
    assert _relative(dataset.paths, tmp_path) == ["ants/a.jpg", "ants/gone.jpg", "ants/loop.jpg", "ants/pipe.png"]


def test_load_dataset_says_which_class_folders_are_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Check that an empty class subfolder is named in one warning (it stays a class, with no images)."""
    for name in ("ants", "bees", "wasps"):
        (tmp_path / name).mkdir()
    for name in ("ants", "bees"):
        Image.new("RGB", (8, 8)).save(tmp_path / name / "a.png")
    with caplog.at_level("WARNING", logger="cnncodes"):
        dataset = load_dataset(tmp_path)
    assert dataset.class_names == ["ants", "bees", "wasps"] and dataset.labels.tolist() == [0, 1]
    assert [r.getMessage() for r in caplog.records] == [f"{tmp_path}: class folder(s) wasps hold no images"]
