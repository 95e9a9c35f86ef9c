"""Tests of model files: atomic save, load round trip, format, version and backbone checks."""

from __future__ import annotations

import re
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
import sklearn
from sklearn.linear_model import LogisticRegression

from cnncodes.errors import ModelFileError, ModelMismatchError, ModelMismatchWarning
from cnncodes.fingerprint import sha256_file
from cnncodes.persist import MODEL_FORMAT, MODEL_FORMAT_VERSION, TRUSTED_TYPES, ModelBundle, load_model, save_model
from cnncodes.version import VERSION


def _bundle(backbone: str = "efficientnet_lite0", sha256: str = "0" * 64) -> ModelBundle:
    head = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    return ModelBundle(head, ["ants", "bees"], {"layers": []}, backbone, sha256, head="logistic")


def test_save_model_round_trip_leaves_no_temporary(tmp_path: Path) -> None:
    """Check that a saved bundle loads back equal, with the format header, and no temporary file is left."""
    path = save_model(_bundle(), tmp_path / "sub" / "model.skops")
    assert path == tmp_path / "sub" / "model.skops" and sorted(p.name for p in path.parent.iterdir()) == ["model.skops"]
    document = skops.io.load(path, trusted=TRUSTED_TYPES)
    assert (document["format"], document["format_version"]) == (MODEL_FORMAT, MODEL_FORMAT_VERSION)
    loaded = load_model(path, check_backbone=False)
    assert loaded.class_names == ["ants", "bees"] and loaded.head == "logistic" and loaded.spec == {"layers": []}
    assert loaded.versions["cnncodes"] == VERSION and loaded.versions["scikit-learn"] == sklearn.__version__
    np.testing.assert_array_equal(loaded.pipeline.predict([[0.0], [1.0]]), [0, 1])


def test_save_model_failure_keeps_the_old_file(tmp_path: Path) -> None:
    """Check that a save that fails midway leaves the previous model file intact and no temporary behind."""
    path = save_model(_bundle(), tmp_path / "model.skops")
    before = path.read_bytes()
    unstorable = _bundle()
    unstorable.metrics["callback"] = lambda: None  # JSON cannot store a function
    with pytest.raises(TypeError, match="cannot store function in a model file's metadata"):
        save_model(unstorable, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.skops"]


def _skops_document(tmp_path: Path, name: str, **document: object) -> Path:
    path = tmp_path / name
    skops.io.dump(document, path)
    return path


def test_load_model_refuses_missing_foreign_empty_and_newer_files(tmp_path: Path) -> None:
    """Check the one-line refusals: no file, empty, not a model, damaged, a newer format version."""
    with pytest.raises(ModelFileError, match=re.escape(f"{tmp_path / 'none.skops'}: no such model file")):
        load_model(tmp_path / "none.skops")
    empty = tmp_path / "empty.skops"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match=re.escape(f"{empty}: empty file, not a cnncodes model file")):
        load_model(empty)
    foreign = _skops_document(tmp_path, "foreign.skops", format="other")
    with pytest.raises(ModelFileError, match=re.escape(f"{foreign}: not a cnncodes model file")):
        load_model(foreign)
    damaged = tmp_path / "damaged.skops"
    damaged.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match=re.escape(f"{damaged}: not a cnncodes model file")):
        load_model(damaged)
    odd = _skops_document(tmp_path, "odd.skops", format=MODEL_FORMAT, format_version=2, pipeline=None, metadata="[]")
    with pytest.raises(ModelFileError, match=re.escape(f"{odd}: not a cnncodes model file (TypeError: ")):
        load_model(odd)
    metadata = '{"class_names": "ab", "spec": {}, "backbone": "x", "backbone_sha256": "0", "versions": []}'
    odd = _skops_document(
        tmp_path, "odd2.skops", format=MODEL_FORMAT, format_version=2, pipeline=None, metadata=metadata
    )
    expected = f"{odd}: not a cnncodes model file (malformed metadata: class_names, versions)"
    with pytest.raises(ModelFileError, match=re.escape(expected)):
        load_model(odd)
    newer = _skops_document(tmp_path, "newer.skops", format=MODEL_FORMAT, format_version=MODEL_FORMAT_VERSION + 1)
    expected = (
        f"{newer}: model format version {MODEL_FORMAT_VERSION + 1} is newer than this cnncodes supports "
        f"({MODEL_FORMAT_VERSION}); upgrade cnncodes"
    )
    with pytest.raises(ModelFileError, match=re.escape(expected)):
        load_model(newer)


class _Odd:
    """A plain object of a type no model file holds."""


class _Payload:
    """An object that would run code on unpickling (its __reduce__ calls a function)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("ran code from the model file",))


def test_load_model_refuses_untrusted_types_and_untrusted_joblib(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Check that a skops file naming a type outside the list, and any joblib file, load nothing without trust."""
    odd = _skops_document(tmp_path, "odd.skops", format=MODEL_FORMAT, format_version=2, pipeline=_Odd(), metadata="{}")
    expected = f"{odd}: refusing to load types outside the trusted list (tests.test_persist._Odd); "
    with pytest.raises(ModelFileError, match=re.escape(expected)):
        load_model(odd, check_backbone=False)
    hostile = tmp_path / "hostile.joblib"
    joblib.dump(_Payload(), hostile)
    expected = f"{hostile}: a joblib (pickle) model file, which can run code when loaded; if you made it yourself"
    with pytest.raises(ModelFileError, match=re.escape(expected)):
        load_model(hostile, check_backbone=False)
    assert capsys.readouterr().out == ""  # nothing ran


def test_load_model_reads_old_joblib_files_only_when_trusted(tmp_path: Path) -> None:
    """Check that a format-1 joblib model loads with trusted=True and predicts as saved."""
    old = tmp_path / "old.joblib"
    joblib.dump({"format": MODEL_FORMAT, "format_version": 1, "bundle": _bundle()}, old)
    loaded = load_model(old, check_backbone=False, trusted=True)
    assert loaded.class_names == ["ants", "bees"]
    np.testing.assert_array_equal(loaded.pipeline.predict([[0.0], [1.0]]), [0, 1])
    foreign = tmp_path / "foreign.joblib"
    joblib.dump({"format": "other"}, foreign)
    with pytest.raises(ModelFileError, match=re.escape(f"{foreign}: not a cnncodes model file")):
        load_model(foreign, trusted=True)
    damaged = tmp_path / "damaged.joblib"
    damaged.write_bytes(b"\x80not a pickle at all")
    with pytest.raises(ModelFileError, match=re.escape(f"{damaged}: not a cnncodes model file (")):
        load_model(damaged, trusted=True)


def test_load_model_truncated_file_is_a_model_file_error(tmp_path: Path) -> None:
    """Check that a model file cut at any byte is refused as a ModelFileError naming it, never another error."""
    whole = save_model(_bundle(), tmp_path / "model.skops").read_bytes()
    cut = tmp_path / "cut.skops"
    for size in range(len(whole)):
        cut.write_bytes(whole[:size])
        with pytest.raises(ModelFileError, match=re.escape(f"{cut}: ")):
            load_model(cut, check_backbone=False)


def test_load_model_warns_on_other_library_versions(tmp_path: Path) -> None:
    """Check that a model saved with another scikit-learn warns, naming both versions."""
    bundle = _bundle()
    bundle.versions["scikit-learn"] = "0.1"
    path = save_model(bundle, tmp_path / "older.skops")
    expected = f"{path}: saved with scikit-learn 0.1, loaded with {sklearn.__version__}; predictions may differ"
    with pytest.warns(ModelMismatchWarning, match=re.escape(expected)) as caught:
        load_model(path, check_backbone=False)
    assert len(caught) == 1


@pytest.mark.usefixtures("default_backbone")
def test_load_model_checks_the_backbone_file(tmp_path: Path, default_backbone: Path) -> None:
    """Check that the backbone file must be the training one: the right hash loads, another is refused."""
    good = save_model(_bundle(sha256=sha256_file(default_backbone)), tmp_path / "good.skops")
    assert load_model(good).backbone == "efficientnet_lite0"
    tampered = save_model(_bundle(sha256="0" * 64), tmp_path / "tampered.skops")
    expected = (
        f"{tampered}: backbone 'efficientnet_lite0' differs from the one this model was trained on "
        f"({default_backbone} has sha256 {sha256_file(default_backbone)[:12]}, expected 000000000000); "
        "retrain or restore that file"
    )
    with pytest.raises(ModelMismatchError, match=re.escape(expected)):
        load_model(tampered)


def test_load_model_names_a_missing_backbone(tmp_path: Path) -> None:
    """Check that a model whose backbone is not available here is refused, naming it."""
    path = save_model(_bundle(backbone=str(tmp_path / "gone.onnx")), tmp_path / "model.skops")
    with pytest.raises(ModelMismatchError, match=re.escape(f"{path}: its backbone '{tmp_path / 'gone.onnx'}' is not")):
        load_model(path)


def test_cli_reads_a_joblib_model_only_with_trust(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check the CLI path: a joblib model file is one line without --trust, evaluates with it; --help warns."""
    from click.testing import CliRunner

    from cnncodes.cli import cli
    from tests.conftest import session_cache, session_model, session_tree

    bundle = load_model(session_model(tmp_path_factory))
    old = tmp_path / "old.joblib"
    joblib.dump({"format": MODEL_FORMAT, "format_version": 1, "bundle": bundle}, old)
    args = [
        "-q",
        "evaluate",
        str(old),
        str(session_tree(tmp_path_factory)),
        "--cache",
        str(session_cache(tmp_path_factory)),
    ]
    refused = CliRunner().invoke(cli, args)
    expected = f"Error: {old}: a joblib (pickle) model file, which can run code when loaded; if you made it yourself, "
    assert refused.exit_code == 1 and refused.stderr.startswith(expected) and refused.stderr.count("\n") == 1
    trusted = CliRunner().invoke(cli, [*args, "--trust", "--format", "json"], catch_exceptions=False)
    assert trusted.exit_code == 0 and '"n_samples": 40' in trusted.stdout
    for command in ("evaluate", "predict"):
        help_text = " ".join(CliRunner().invoke(cli, [command, "--help"]).stdout.split())
        assert "--trust" in help_text and "WARNING: joblib (pickle) files run code when loaded" in help_text
