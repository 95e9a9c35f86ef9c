"""What a second hostile pass over the installed wheel found, each through the real CLI: one line, nothing lost.

Each test failed before its fix: an output written over an input, class folders whose names are not UTF-8,
symlinked folders and images beside the class folders dropped silently, a quote left open in a CSV, codes files
whose codes disagree with their spec, model metadata that disagrees with its head, groups that follow the
classes, one bad user card that stopped every command, an evaluation counting a class it has no image of.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import skops.io
from click.testing import CliRunner

import cnncodes
from cnncodes.cli import cli
from cnncodes.codesfile import CodesFile, read_codes_file, write_codes_file
from cnncodes.errors import CacheFormatError, ModelFileError, OutputError
from cnncodes.persist import load_model
from cnncodes.report import make_report
from tests.conftest import HYMENOPTERA, build_tiny_model

ANTS = sorted((HYMENOPTERA / "train" / "ants").glob("*.jpg"))
BEES = sorted((HYMENOPTERA / "train" / "bees").glob("*.jpg"))


def _run(*args: str | Path) -> tuple[int, str, list[str]]:
    result = CliRunner().invoke(cli, ["-q", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr.splitlines()


def _tree(root: Path, classes: dict[str, list[Path]]) -> Path:
    for name, photos in classes.items():
        folder = root / os.fsdecode(name.encode("utf-8", "surrogateescape"))
        folder.mkdir(parents=True, exist_ok=True)
        for photo in photos:
            shutil.copyfile(photo, folder / photo.name)
    return root


def test_an_output_file_that_is_an_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    """Check that `extract -o` naming one of its images, and `train -o` naming an image or the codes file it
    trains on, are one line each, exit 1, with the file untouched (before: the photo was replaced by HDF5)."""
    model, photos = build_tiny_model(tmp_path / "tiny.onnx"), _tree(tmp_path / "tree", {"a": ANTS[:3], "b": BEES[:3]})
    image = photos / "a" / ANTS[0].name
    original = image.read_bytes()
    code, _, lines = _run("extract", image, photos / "b", "--model", model, "-l", "conv2", "--no-cache", "-o", image)
    assert (code, lines[-1]) == (
        1,
        f"Error: {image}: is an input of this run; nothing was written (choose another " "output file)",
    )
    codes = tmp_path / "codes.h5"
    assert _run("extract", photos, "--model", model, "-l", "conv2", "--no-cache", "-o", codes)[0] == 0
    for target in (codes, photos / "b" / BEES[1].name):
        before = target.read_bytes()
        code, _, lines = _run(
            "train",
            codes if target == codes else photos,
            "--model",
            model,
            "-l",
            "conv2",
            "--cv",
            "2",
            "--no-cache",
            "-o",
            target,
        )
        assert code == 1 and lines[-1].startswith(f"Error: {target}: is an input of this run")
        assert target.read_bytes() == before
    assert image.read_bytes() == original
    with pytest.raises(OutputError, match="is an input of this run"):
        cnncodes.extract([image], model=str(model), layer="conv2", cache=False, progress=False, output=image)


def test_class_folders_whose_names_are_not_utf8_work_end_to_end(tmp_path: Path) -> None:
    """Check that a class folder named b"cl\\xffass" is the class 'cl\\\\xffass' in the codes file, the model and the
    report page (before: a UnicodeEncodeError traceback writing -o, and another writing the report)."""
    model = build_tiny_model(tmp_path / "tiny.onnx")
    photos = _tree(tmp_path / "tree", {"ants": ANTS[:4], "cl\udcffass": BEES[:4]})
    codes = tmp_path / "codes.h5"
    assert _run("extract", photos, "--model", model, "-l", "conv2", "--no-cache", "-o", codes)[0] == 0
    assert read_codes_file(codes).class_names == ["ants", "cl\\xffass"]
    trained = tmp_path / "m.skops"
    code, _, _ = _run("train", photos, "--model", model, "-l", "conv2", "--cv", "2", "--no-cache", "-o", trained)
    assert code == 0 and load_model(trained, check_backbone=False).class_names == ["ants", "cl\\xffass"]
    code, out, _ = _run("evaluate", trained, photos, "--no-cache", "--report", tmp_path / "report", "--format", "json")
    assert code == 0 and "cl\\\\xffass" in out
    assert "cl\\xffass" in (tmp_path / "report" / "index.html").read_text(encoding="utf-8")


def test_symlinked_folders_are_followed_once_and_loose_images_are_named(tmp_path: Path, caplog) -> None:
    """Check that a symlink to a folder inside a class folder brings its images (before: dropped without a word),
    that a link back up to the class folder is no loop, and that images beside the class folders are named in one
    warning instead of vanishing."""
    photos = _tree(tmp_path / "tree", {"ants": ANTS[:2]})
    extra = _tree(tmp_path / "elsewhere", {"more": ANTS[2:5]}) / "more"
    (photos / "ants" / "linked").symlink_to(extra, target_is_directory=True)
    (photos / "ants" / "up").symlink_to(photos / "ants", target_is_directory=True)
    shutil.copyfile(BEES[0], photos / "loose.jpg")
    dataset = cnncodes.load_dataset(photos)
    assert sorted(p.name for p in dataset.paths) == sorted(p.name for p in ANTS[:5])
    assert any(
        re.search(r"1 image file\(s\) beside the class folders, in no class, left out: loose\.jpg", m)
        for m in caplog.messages
    )


def test_a_folder_reached_from_two_classes_is_refused(tmp_path: Path) -> None:
    """Check that a link from one class folder into another class, or up to the top folder, is one line (its
    images would get two labels), and that two classes linking one outside folder are refused too."""
    photos = _tree(tmp_path / "tree", {"ants": ANTS[:2], "bees": BEES[:2]})
    link = photos / "ants" / "dirlink"
    for target, holder in ((photos / "bees", "class 'bees'"), (photos, "the top folder")):
        link.symlink_to(target, target_is_directory=True)
        code, _, lines = _run("extract", photos, "--no-cache")
        assert (code, lines) == (1, [f"Error: {link}: a link to a folder of {holder}; an image cannot have two labels"])
        link.unlink()
    common = _tree(tmp_path / "common", {"more": ANTS[2:4]}) / "more"
    (photos / "ants" / "x").symlink_to(common, target_is_directory=True)
    (photos / "bees" / "x").symlink_to(common, target_is_directory=True)
    with pytest.raises(cnncodes.InputError, match="^" + re.escape(f"{photos / 'bees' / 'x'}: a link to a folder of")):
        cnncodes.load_dataset(photos)


def test_a_quote_left_open_in_a_csv_is_named_by_line(tmp_path: Path) -> None:
    """Check that a CSV whose quote runs over the next lines is one line naming where (before: a path holding a
    line break failed as a two-line message)."""
    listing = tmp_path / "labels.csv"
    listing.write_text(f'path,label\n"{ANTS[0]},ants\n{BEES[0]},bees\n', encoding="utf-8")
    code, _, lines = _run("extract", listing, "--no-cache")
    assert (code, lines) == (
        1,
        [f"Error: {listing}: line 2: a quoted field runs over a line break (a quote " "left open?)"],
    )
    assert cnncodes.messages.display_name("a\nb.jpg") == "a\\x0ab.jpg"


def _codes_file(path: Path, width: int = 4, **changes: object) -> Path:
    content = CodesFile(
        np.ones((4, width), np.float32),
        list("abcd"),
        list("1234"),
        np.array([0, 1, 0, 1]),
        ["x", "y"],
        spec={"n_features": 4},
    )
    write_codes_file(path, content)
    with h5py.File(path, "r+") as handle:
        for name, value in changes.items():
            if name == "format":
                del handle.attrs["format"]
            else:
                del handle[name]
                handle[name] = value
    return path


@pytest.mark.parametrize(
    "changes,reason",
    [
        ({"codes": np.ones(4, np.float32)}, "not a readable codes file (/codes is not a table of rows)"),
        ({"codes": np.ones((4, 8), np.float32)}, "damaged codes file (its codes are 8 wide, its spec says 4)"),
        ({"format": None}, "not a cnncodes-codes file (format attribute None)"),
    ],
    ids=["one-dimensional", "wider-than-its-spec", "no-format-attribute"],
)
def test_codes_files_that_disagree_with_themselves_are_one_line(tmp_path: Path, changes: dict, reason: str) -> None:
    """Check a 1-D /codes (before: scikit-learn's traceback), codes wider than the spec says (before: train exited 0
    with a model that could not predict) and a file without its format attribute (before: 'no labels')."""
    path = _codes_file(tmp_path / "codes.h5", **changes)
    with pytest.raises(CacheFormatError, match="^" + re.escape(f"{path}: {reason}") + "$"):
        read_codes_file(path)
    code, _, lines = _run("train", path, "-o", tmp_path / "m.skops")
    assert (code, lines[-1]) == (1, f"Error: {path}: {reason}")
    assert not (tmp_path / "m.skops").exists()


def test_model_metadata_that_disagrees_with_its_head_is_refused(tmp_path: Path, trained: Path) -> None:
    """Check that a model file whose metadata names fewer classes than its head predicts, or codes of another
    width than its head takes, is one line (before: an IndexError traceback in predict)."""
    for name, change in (("classes", {"class_names": ["ants"]}), ("width", {"spec": {"n_features": 7}})):
        document = skops.io.load(trained, trusted=skops.io.get_untrusted_types(file=trained))
        metadata = json.loads(document["metadata"])
        if "spec" in change:
            change = {"spec": {**metadata["spec"], **change["spec"]}}
        document["metadata"] = json.dumps({**metadata, **change})
        tampered = tmp_path / f"{name}.skops"
        skops.io.dump(document, tampered)
        with pytest.raises(ModelFileError, match=f"^{re.escape(str(tampered))}: not a cnncodes model file \\(its"):
            load_model(tampered)
        code, _, lines = _run("predict", tampered, ANTS[0], "--no-cache")
        assert code == 1 and lines[-1].startswith(f"Error: {tampered}: not a cnncodes model file (its head")


def test_an_evaluation_without_images_of_a_class_leaves_it_out_of_the_averages(tmp_path: Path, trained: Path) -> None:
    """Check that evaluating on bees alone, all right, gives macro F1 1.0 and names the absent class (before: 0.5
    with exit 0, the absent class averaged in as 0)."""
    report = make_report([1, 1, 1], [1, 1, 1], ["ants", "bees"])
    assert (report.macro_f1, report.balanced_accuracy, report.absent_classes) == (1.0, 1.0, ["ants"])
    assert "class 'ants': no image here and never predicted" in report.table()
    wrong = make_report([1, 1], [0, 1], ["ants", "bees"])  # predicted but absent: counted, as scikit-learn does
    assert wrong.absent_classes == [] and wrong.macro_f1 == pytest.approx((0 + 2 / 3) / 2)
    bees = _tree(tmp_path / "only", {"bees": BEES[:4]})
    code, out, _ = _run("evaluate", trained, bees, "--format", "json")
    assert code == 0 and json.loads(out)["absent_classes"] == ["ants"] and json.loads(out)["macro_f1"] == 1.0


def test_groups_that_follow_the_classes_are_one_line(tmp_path: Path, trained: Path) -> None:
    """Check that --groups whose groups each hold one class is refused in one line before any fit (before:
    scikit-learn's 'fits failed' tracebacks four times on stderr)."""
    photos = _tree(tmp_path / "tree", {"ants": ANTS[:4], "bees": BEES[:4]})
    for folder, tag in ((photos / "ants", "g1"), (photos / "bees", "g2")):
        for photo in folder.iterdir():
            photo.rename(folder / f"{tag}_{photo.name}")
    code, _, lines = _run("sweep", photos, "--layers", "penultimate", "--no-baseline", "--groups", r"^(g\d)_")
    assert code == 1 and len([line for line in lines if line.startswith("Error")]) == 1
    assert re.fullmatch(
        r"Error: The 'groups' pattern .* gives folds that cannot be trained: with group\(s\) 'g\d' "
        r"held out, the rest hold only class '(ants|bees)'; groups must cut across the classes .*",
        lines[-1],
    )
    assert not any("Traceback" in line or "fits failed" in line for line in lines)


def test_one_bad_user_card_leaves_the_other_models_working(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that a card in the models folder that breaks the rules is left out with one warning and names itself
    only when asked for (before: every command, the default model's too, stopped on it)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "evil.json").write_text(json.dumps({"name": "evil", "onnx_file": "../../x.onnx"}), encoding="utf-8")
    (models / "garbage.json").write_text("{not json", encoding="utf-8")
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(models))
    monkeypatch.setattr(cnncodes.backbones, "_warned_cards", set())
    with pytest.warns(UserWarning) as warned:
        names = [spec.name for spec in cnncodes.list_backbones()]
    assert "efficientnet_lite0" in names and "evil" not in names
    assert sorted(str(w.message).split(":")[0] for w in warned) == [
        str(models / "evil.json"),
        str(models / "garbage.json"),
    ]
    assert cnncodes.get_backbone("efficientnet_lite0").name == "efficientnet_lite0"
    with pytest.raises(ModelFileError, match=f"^{re.escape(str(models / 'garbage.json'))}: not a valid model card"):
        cnncodes.get_backbone("garbage")


def test_param_values_python_reads_as_numbers_and_a_name_given_twice(tmp_path: Path, trained: Path) -> None:
    """Check --param C=inf is the number (before: the text 'inf', refused as 'not in (0.0, inf]') and C given twice
    is refused (before: the last one won silently)."""
    from cnncodes.cli.options import parse_params

    assert parse_params(None, None, ("C=inf", "alpha=1e-3", "penalty=l2")) == {
        "C": float("inf"),
        "alpha": 1e-3,
        "penalty": "l2",
    }
    photos = _tree(tmp_path / "tree", {"ants": ANTS[:2], "bees": BEES[:2]})
    code, _, lines = _run("train", photos, "-o", tmp_path / "m.skops", "--param", "C=1", "--param", "C=2")
    assert code == 2 and "C is given twice" in lines[-1]


def test_a_training_set_emptied_by_failures_says_why(tmp_path: Path) -> None:
    """Check that when every file of a class failed, the refusal names how many failed and the first reason
    (before: only 'has no images', the reasons never shown)."""
    photos = _tree(tmp_path / "tree", {"ants": ANTS[:3], "bees": BEES[:3]})
    (photos / "wasps").mkdir()
    (photos / "wasps" / "empty.jpg").write_bytes(b"")
    code, _, lines = _run("train", photos, "--no-cache", "-o", tmp_path / "m.skops")
    assert code == 1
    assert lines[-1].endswith(f"(1 file(s) failed; the first: {photos / 'wasps' / 'empty.jpg'}: empty file (0 bytes))")


def test_pillow_warnings_about_an_image_name_it(tmp_path: Path) -> None:
    """Check that a TIFF cut inside its header fails alone and that any warning Pillow raises on the way names the
    file (before: "Corrupt EXIF data. Expecting to read 12 bytes but only got 8." beside the failure, naming none)."""
    import io

    from PIL import Image

    encoded, photo = io.BytesIO(), Image.open(ANTS[0])
    photo.convert("RGB").resize((120, 90)).save(encoded, "TIFF", exif=photo.getexif())
    cuts = []
    for size in (239, 260, 1500):  # the header opens, its EXIF is cut: Pillow warns "Truncated File Read"
        cuts.append(tmp_path / f"cut{size}.tif")
        cuts[-1].write_bytes(encoded.getvalue()[:size])
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        result = cnncodes.extract(cuts, cache=False, progress=False)
    assert len(result.failures) == 3 and len(result.paths) == 0
    assert raised and all(str(w.message).startswith(tuple(f"{cut}: " for cut in cuts)) for w in raised), raised


def test_a_model_trained_on_the_earlier_fast_resize_rule_says_so(tmp_path: Path, trained: Path) -> None:
    """Check that a model whose codes were cut by the fast decoder's earlier rule (its spec names no resize_rule)
    loads with a ModelMismatchWarning naming it, and one of this version loads without."""
    from cnncodes.errors import ModelMismatchWarning

    document = skops.io.load(trained, trusted=skops.io.get_untrusted_types(file=trained))
    metadata = json.loads(document["metadata"])
    for layer in metadata["spec"]["layers"]:
        del layer["preprocessing"]["resize_rule"]
    document["metadata"] = json.dumps(metadata)
    earlier = tmp_path / "earlier.skops"
    skops.io.dump(document, earlier)
    with pytest.warns(ModelMismatchWarning, match=f"^{re.escape(str(earlier))}: trained on codes of the fast decod"):
        load_model(earlier)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        load_model(trained)
