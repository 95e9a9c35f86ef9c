"""Files nobody planned for, through the real CLI in one run: each bad file is one failure line, the rest work.

The corpus is real photos (JPEGs with EXIF, and PNG/WebP/BMP/TIFF made from one) cut at every byte of
their first 2 KB and at 20 points after, beside FIFOs, broken and looping symlinks, a name that is not
valid UTF-8 and JPEGs that a decoder would fill with grey.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import cnncodes
from cnncodes.codesfile import read_codes_file
from cnncodes.cli import cli
from cnncodes.inputs import display_name
from tests.badfiles import cut_points, make_cut_files, make_hostile_files
from tests.conftest import HYMENOPTERA, as_an_ordinary_user, build_tiny_model

EXIF_PHOTOS = [HYMENOPTERA / f"train/ants/{name}.jpg" for name in ("0013035", "175998972", "MehdiabadiAnt2_600")]


def _originals() -> dict[str, bytes]:
    """Three real JPEGs with EXIF as they are, and one real photo (smaller) as PNG, WebP, BMP and TIFF."""
    originals = {f"photo{i}.jpg": path.read_bytes() for i, path in enumerate(EXIF_PHOTOS)}
    assert all(len(Image.open(path).getexif()) > 3 for path in EXIF_PHOTOS)
    photo = Image.open(EXIF_PHOTOS[1]).convert("RGB").resize((240, 180))
    for fmt in ("PNG", "WEBP", "BMP", "TIFF"):
        encoded = io.BytesIO()
        photo.save(encoded, fmt)
        originals[f"photo.{fmt.lower()}"] = encoded.getvalue()
    return originals


def _extract(*args: str | Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["-q", "extract", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.stderr.splitlines()


def _alone(path: Path, model: Path) -> np.ndarray:
    return cnncodes.extract([path], model=str(model), layer="conv2", cache=False, progress=False).codes[0]


def test_every_cut_of_real_photos_fails_alone_in_one_cli_run(tmp_path: Path) -> None:
    """Check that ~14,000 cut files in one folder give exit 3, one failure line per bad file, and a row equal to
    its codes alone for every file that decodes (the originals, and cuts that lost only trailing bytes)."""
    originals = _originals()
    files = make_cut_files(tmp_path / "cuts", originals)
    model, output = build_tiny_model(tmp_path / "tiny.onnx"), tmp_path / "codes.h5"
    code, lines = _extract(tmp_path / "cuts", "--model", model, "-l", "conv2", "--no-cache", "-o", output)
    assert code == 3
    failed = [line.removeprefix("failed: ").split(": ", 1) for line in lines if line.startswith("failed: ")]
    content = read_codes_file(output)
    assert sorted(content.paths + [path for path, _ in failed]) == sorted(str(f) for f in files)  # each file once
    assert len(failed) == len(set(path for path, _ in failed)) and all(reason for _, reason in failed)
    for name in originals:
        assert str(tmp_path / "cuts" / name) in content.paths
    n_head = sum(min(2048, len(data)) for data in originals.values())
    assert len(failed) >= n_head  # every cut inside the first 2 KB fails (each file is larger)
    assert len(files) == len(originals) + sum(len(cut_points(len(d))) for d in originals.values()) > 14_000
    for path, codes in zip(content.paths, content.codes):
        np.testing.assert_array_equal(codes, _alone(Path(path), model))


def test_hostile_entries_of_a_class_folder_fail_by_name_and_good_ones_work(tmp_path: Path) -> None:
    """Check a FIFO (no hang), broken and looping symlinks (reported, not dropped), a JPEG cut in its EXIF header,
    one cut and closed by an EOI marker, one claiming 8000 x 8000 pixels, and a good file whose name is not
    UTF-8 (a row, also on the second run through the file-key memo, and in the -o file)."""
    files = make_hostile_files(tmp_path / "tree" / "ants", EXIF_PHOTOS[0])
    (tmp_path / "tree" / "bees").mkdir()
    (tmp_path / "tree" / "bees" / "bee.jpg").write_bytes(EXIF_PHOTOS[1].read_bytes())
    model = build_tiny_model(tmp_path / "tiny.onnx")
    reasons = {
        "fifo": "not a regular file (a FIFO)",
        "broken_link": f"broken symbolic link (its target '{files['broken_link'].parent / 'missing.jpg'}' is missing)",
        "link_loop": "cannot read file (Too many levels of symbolic links)",
        "header_cut": "cannot decode image (Truncated File Read)",
        "eoi_cut": "cannot decode image (Corrupt JPEG data: premature end of data segment)",
        "too_many_pixels": "cannot decode image (header claims 8000 x 8000 pixels, the file has 46706 bytes)",
    }
    for run in range(2):  # the second run takes the good files' keys from the memo
        output = tmp_path / f"codes{run}.h5"
        args = ("--model", model, "-l", "conv2", "--cache", tmp_path / "cache", "-o", output)
        code, lines = _extract(tmp_path / "tree", *args)
        assert code == 3
        assert sorted(line for line in lines if line.startswith("failed: ")) == sorted(
            f"failed: {files[name]}: {reason}" for name, reason in reasons.items()
        )
        content = read_codes_file(output)
        assert content.paths == [
            display_name(files["bad_name"]),
            str(files["good"]),
            str(tmp_path / "tree/bees/bee.jpg"),
        ]
        assert content.paths[0].endswith("bad\\xff\\xfe.jpg") and content.class_names == ["ants", "bees"]
        assert content.labels.tolist() == [0, 0, 1]
        np.testing.assert_array_equal(content.codes[0], _alone(files["good"], model))
        np.testing.assert_array_equal(content.codes[0], _alone(files["bad_name"], model))
    code, lines = _extract(files["fifo"], "--model", model, "-l", "conv2", "--no-cache", "--strict")
    assert (code, lines) == (1, [f"Error: {files['fifo']}: not a regular file (a FIFO)"])


def test_decoding_closes_every_file(tmp_path: Path) -> None:
    """Check that decoding good, bad and refused files leaves no file open (ResourceWarning as an error)."""
    make_hostile_files(tmp_path / "ants", EXIF_PHOTOS[0])
    model = build_tiny_model(tmp_path / "tiny.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        for _ in range(3):
            result = cnncodes.extract(tmp_path / "ants", model=str(model), layer="conv2", cache=False, progress=False)
            assert len(result.paths) == 2 and result.n_failed == 6
        import gc

        gc.collect()  # an unclosed file warns when it is collected
    assert not [fd for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}").endswith(".jpg")]


@pytest.mark.parametrize("name", ["photo0.jpg", "photo.png", "photo.webp", "photo.bmp"])
def test_a_few_bytes_of_any_format_are_one_decode_error(name: str) -> None:
    """Check that a file cut inside its header (JPEG/PNG/BMP at a few bytes, WebP up to 2 KB) is an ImageDecodeError."""
    data = _originals()[name]
    pre = cnncodes.images.Preprocessing(32, 1.0, "bilinear")
    for cut in range(1, 2048):
        with pytest.raises(cnncodes.ImageDecodeError, match=r"^<cut>: (cannot decode image|not an image)"):
            cnncodes.images.decode_image(data[:cut], pre, name="<cut>")


def test_a_csv_listing_a_fifo_and_missing_files_runs_to_the_end(tmp_path: Path) -> None:
    """Check that a CSV (Excel's BOM included) listing a FIFO, a folder and a missing file beside a real photo gives
    the photo's codes and one failure per bad row, without waiting on the FIFO."""
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "photo.jpg").write_bytes(EXIF_PHOTOS[0].read_bytes())
    rows = "path,label\r\npipe.jpg,ant\r\nfolder.jpg,ant\r\ngone.jpg,bee\r\nphoto.jpg,bee\r\n"
    (tmp_path / "list.csv").write_bytes(rows.encode("utf-8-sig"))
    model = build_tiny_model(tmp_path / "tiny.onnx")
    result = cnncodes.extract(tmp_path / "list.csv", model=str(model), layer="conv2", cache=False, progress=False)
    assert result.paths == [str(tmp_path / "photo.jpg")] and result.labels.tolist() == [1]
    assert result.failures == [
        (str(tmp_path / "pipe.jpg"), "not a regular file (a FIFO)"),
        (str(tmp_path / "folder.jpg"), "not a regular file (a folder)"),
        (str(tmp_path / "gone.jpg"), "cannot read file (No such file or directory)"),
    ]


_LOAD_ALONE = """
import sys, cnncodes
try:
    cnncodes.load_dataset(sys.argv[1])
except cnncodes.InputError as error:
    print(error)
"""


def test_unreadable_files_and_folders_are_failure_rows_through_the_cli(tmp_path: Path) -> None:
    """Check, in a process that file permissions apply to, that an unreadable photo, an unreadable subfolder of
    a class and an unreadable class folder are each one failure line (not silently missing), exit 3, with the
    readable photos' codes in the -o file; an unreadable folder given alone is a one-line error (from click, and
    from load_dataset)."""
    tree, photo = tmp_path / "tree", EXIF_PHOTOS[0].read_bytes()
    for name in ("ants/a.jpg", "ants/more/b.jpg", "bees/c.jpg", "bees/locked.jpg", "wasps/d.jpg"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(photo)
    locked = [tree / "ants/more", tree / "bees/locked.jpg", tree / "wasps"]
    model, output = build_tiny_model(tmp_path / "tiny.onnx"), tmp_path / "codes.h5"
    cli_command = [sys.executable, "-m", "cnncodes", "-q", "extract", "--model", str(model), "-l", "conv2"]
    cli_command += ["--cache", str(tmp_path / "cache"), "-o", str(output)]
    for path in locked:
        path.chmod(0)
    try:
        run = subprocess.run(as_an_ordinary_user(*cli_command, str(tree)), capture_output=True, text=True)
        alone = subprocess.run(as_an_ordinary_user(*cli_command, str(tree / "wasps")), capture_output=True, text=True)
        in_python = subprocess.run(
            as_an_ordinary_user(sys.executable, "-c", _LOAD_ALONE, str(tree / "wasps")), capture_output=True, text=True
        )
    finally:
        for path in locked:
            path.chmod(0o755)
    assert run.returncode == 3, run.stderr
    assert sorted(line for line in run.stderr.splitlines() if line.startswith("failed: ")) == [
        f"failed: {tree / 'ants/more'}: cannot list folder (Permission denied)",
        f"failed: {tree / 'bees/locked.jpg'}: cannot read file (Permission denied)",
        f"failed: {tree / 'wasps'}: cannot list folder (Permission denied)",
    ]
    content = read_codes_file(output)
    assert content.paths == [str(tree / "ants/a.jpg"), str(tree / "bees/c.jpg")]
    assert content.class_names == ["ants", "bees", "wasps"] and content.labels.tolist() == [0, 1]
    assert alone.returncode == 2 and "'" + str(tree / "wasps") + "' is not readable" in alone.stderr.splitlines()[-1]
    assert in_python.stdout == f"{tree / 'wasps'}: cannot list folder (Permission denied)\n", in_python.stderr
