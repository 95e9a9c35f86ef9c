"""Tests of the command line, all in one place: help, options from the declarations, output, errors, exit codes."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result

import cnncodes
from cnncodes import params
from cnncodes.codesfile import read_codes_file
from cnncodes.cli import cli
from cnncodes.paths import cards_dir
from tests.badfiles import make_bad_files
from tests.conftest import HYMENOPTERA
from tests.httpserver import LocalServer
from tests.conftest import session_cache, session_model, session_tree

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
RUN_COMMANDS = ("extract", "train", "evaluate", "predict", "sweep")
CODE_COMMANDS = ("extract", "train")
RUN_OPTIONS = tuple(name for name in params.RUN_PARAMETERS if name not in ("cache", "on_error"))
FLAGS = {"model": "--model", "layer": "--layer", "n_threads": "--threads", "n_workers": "--workers"}


def _walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*prefix, name))


COMMANDS = {" ".join(path): command for path, command in _walk(cli)}


def _invoke(*args: str | Path) -> Result:
    """A success path: exceptions propagate so a failure shows its traceback."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _fails(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _option(command: str, name: str) -> click.Parameter:
    return next(p for p in COMMANDS[command].params if p.name == name)


# --- help, README, option declarations ---------------------------------------------------------------------------


def test_cli_commands_include_every_group_subcommand() -> None:
    """Check that the command walk reaches the subcommands of groups (models fetch, cache ls/info/verify/compact/rm)."""
    expected = {"models fetch", "cache ls", "cache info", "cache verify", "cache compact", "cache rm"}
    assert expected <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_command_has_help_with_example_and_is_in_readme(command: str) -> None:
    """Check that every command and subcommand prints help with an example and is shown in the README."""
    result = _invoke(*command.split(), "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: cli {command} ") and "\n  Example:\n" in result.stdout
    assert re.search(rf"\bcnncodes {re.escape(command)}\b", README), f"'cnncodes {command}' is not in README.md"


DECLARED = [(command, name) for command in CODE_COMMANDS for name in params.CODE_PARAMETERS]
DECLARED += [(command, name) for command in RUN_COMMANDS for name in RUN_OPTIONS]


@pytest.mark.parametrize(("command", "name"), DECLARED, ids=[f"{command}-{name}" for command, name in DECLARED])
def test_cli_option_follows_its_declaration(command: str, name: str) -> None:
    """Check that each code option (extract, train) and run option (every run command) follows params exactly."""
    declared = params.PARAMETERS[name]
    option = _option(command, name)
    assert option.opts[0] == FLAGS.get(name, declared.option)
    assert option.default == declared.default
    assert tuple(getattr(option.type, "choices", ())) == (declared.choices or ())
    assert option.help.startswith(declared.help.partition("; None: ")[0].rstrip("."))


@pytest.mark.parametrize("command", RUN_COMMANDS)
def test_cli_cache_options_on_every_run_command(command: str) -> None:
    """Check that each run command has --cache DIR and --no-cache, with the help of the one cache declaration."""
    help_text = " ".join(_invoke(command, "--help").stdout.split())
    assert "--cache DIRECTORY Cache folder. [default: $CNNCODES_CACHE or the user cache folder]" in help_text
    assert "--no-cache No cache." in help_text


def test_cli_one_output_format_option() -> None:
    """Check that no command has --json and every command that prints results takes --format table|json[|csv]."""
    with_format = set()
    for name, command in COMMANDS.items():
        flags = {flag for parameter in command.params for flag in parameter.opts}
        assert "--json" not in flags, name
        if "--format" in flags:
            choices = _option(name, "output_format").type.choices
            assert choices[0] == "table" and "json" in choices, name
            with_format.add(name)
    assert with_format == {"models", "layers", "extract", "cache ls", "train", "evaluate", "predict", "sweep"} | {
        "classify",
        "similar",
        "duplicates",
    }
    assert _option("predict", "output_format").type.choices == ("table", "csv", "json")


@pytest.mark.parametrize(
    ("command", "flag", "function", "parameter"),
    [
        ("train", "--head", cnncodes.train, "head"),
        ("train", "--cv", cnncodes.train, "cv"),
        ("predict", "--top-k", cnncodes.predict, "top_k"),
        ("sweep", "--cv", cnncodes.sweep, "cv"),
        ("export", "--weights", cnncodes.export_model, "weights"),
        ("classify", "--top-k", cnncodes.classify, "top_k"),
        ("similar", "--top-k", cnncodes.similar, "top_k"),
        ("similar", "--method", cnncodes.similar, "method"),
        ("duplicates", "--threshold", cnncodes.find_duplicates, "threshold"),
    ],
    ids=["train-head", "train-cv", "predict-top-k", "sweep-cv", "export-weights"]
    + ["classify-top-k", "similar-top-k", "similar-method", "duplicates-threshold"],
)
def test_cli_other_defaults_come_from_the_library(command: str, flag: str, function: object, parameter: str) -> None:
    """Check that command-specific defaults are the library function's own, shown in the help."""
    default = inspect.signature(function).parameters[parameter].default
    help_text = " ".join(_invoke(command, "--help").stdout.split())
    assert re.search(rf"{flag} \S+ .*?\[default: {re.escape(str(default))}[;\]]", help_text)


def test_cli_head_and_export_choices_from_their_declarations() -> None:
    """Check that --head lists params.HEAD_NAMES and export NAME lists the exportable models."""
    from cnncodes.export import EXPORTABLE

    assert set(_option("train", "head").type.choices) == set(params.HEAD_NAMES)
    assert set(_option("sweep", "heads").type.choices) == set(params.HEAD_NAMES)
    assert set(_option("export", "name").type.choices) == set(EXPORTABLE)


def test_python_m_cnncodes() -> None:
    """Check that `python -m cnncodes` is the CLI."""
    completed = subprocess.run([sys.executable, "-m", "cnncodes", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0 and completed.stdout.startswith("Usage: python -m cnncodes [OPTIONS] COMMAND")


@pytest.mark.parametrize("args", [["models"], ["layers", "efficientnet_lite0"]], ids=["models", "layers"])
def test_cli_listing_imports_no_torch(args: list[str]) -> None:
    """Check that listing the zoo works without importing torch (the core never needs it)."""
    code = (
        "import sys\nfrom cnncodes.cli import cli\n"
        f"cli({args!r}, standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


# --- the zoo -----------------------------------------------------------------------------------------------------


def test_cli_layers_lite0_table() -> None:
    """Check the exact table of `cnncodes layers efficientnet_lite0`."""
    result = _invoke("layers", "efficientnet_lite0")
    assert result.exit_code == 0
    assert result.stdout == (
        "layer        tensor       channels  spatial  stride  non-negative  relu\n"
        "-----------  -----------  --------  -------  ------  ------------  ----\n"
        "penultimate  penultimate  1280      -        -       yes           no\n"
        "stage1       stage1       16        112x112  2       no            yes\n"
        "stage2       stage2       24        56x56    4       no            yes\n"
        "stage3       stage3       40        28x28    8       no            yes\n"
        "stage4       stage4       80        14x14    16      no            yes\n"
        "stage5       stage5       112       14x14    16      no            yes\n"
        "stage6       stage6       192       7x7      32      no            yes\n"
        "stage7       stage7       320       7x7      32      no            yes\n"
        "head         head         1280      7x7      32      yes           no\n"
        "logits       logits       1000      -        -       no            no\n"
    )


def test_cli_layers_any_onnx(tiny_onnx: Path) -> None:
    """Check that `cnncodes layers FILE.onnx` lists tensors with inferred shapes, as JSON and as a table."""
    result = _invoke("layers", tiny_onnx, "--format", "json")
    assert result.exit_code == 0
    rows = {row["tensor"]: row for row in json.loads(result.stdout)}
    assert rows["conv2"]["shape"] == ["N", 6, 8, 8] and rows["conv2"]["channels"] == 6
    table = _invoke("layers", tiny_onnx).stdout
    assert table.splitlines()[0].split() == ["tensor", "shape", "channels"]
    assert re.search(r"^conv1 +Nx4x16x16 +4$", table, re.M)


def test_cli_models_lists_zoo() -> None:
    """Check that `cnncodes models` lists every card, as JSON (taps, presence, license) and as a table."""
    result = _invoke("models", "--format", "json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert {row["name"] for row in rows} == {card.stem for card in cards_dir().glob("*.json")}
    lite0 = next(row for row in rows if row["name"] == "efficientnet_lite0")
    assert lite0["input_size"] == 224 and lite0["taps"]["penultimate"] == 1280 and lite0["license"] == "Apache-2.0"
    table = _invoke("models").stdout.splitlines()
    assert table[0].split() == ["name", "input", "default", "taps", "present", "license"]
    assert len(table) == 2 + len(rows)


def test_cli_unknown_model_is_one_line_error() -> None:
    """Check that an unknown model exits 1 with one 'Error:' line and a suggestion."""
    result = _fails("layers", "resnet19")
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: Unknown backbone 'resnet19'. Did you mean 'resnet18'? Run 'cnncodes models' to list them.\n"
    )


def _url_card(folder: Path, url: str, sha256: str) -> None:
    card = json.loads((cards_dir() / "resnet18.json").read_text())
    card.update(name="served_resnet", source="url", url=url, sha256=sha256, onnx_file="served_resnet.onnx")
    (folder / "served_resnet.json").write_text(json.dumps(card))


def test_cli_models_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_onnx: Path) -> None:
    """Check that `cnncodes models fetch` downloads a card's ONNX file and `models` then shows it present."""
    data = tiny_onnx.read_bytes()
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(models))
    with LocalServer({"/served.onnx": data}) as server:
        _url_card(models, f"{server.url}/served.onnx", hashlib.sha256(data).hexdigest())
        result = _invoke("-q", "models", "fetch", "served_resnet")
    assert result.exit_code == 0
    assert result.stdout == f"served_resnet: {models / 'served_resnet.onnx'}\n"
    assert (models / "served_resnet.onnx").read_bytes() == data
    listing = json.loads(_invoke("models", "--format", "json").stdout)
    assert next(row for row in listing if row["name"] == "served_resnet")["present"] is True


def test_cli_models_fetch_bad_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_onnx: Path) -> None:
    """Check that a bad checksum fails with exit code 1, one line, and no file."""
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(models))
    with LocalServer({"/served.onnx": tiny_onnx.read_bytes()}) as server:
        _url_card(models, f"{server.url}/served.onnx", "f" * 64)
        result = _fails("-q", "models", "fetch", "served_resnet")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {server.url}/served.onnx: sha256 mismatch (expected {'f' * 64}, got ")
    assert result.stderr.endswith("; nothing was saved\n") and result.stderr.count("\n") == 1
    assert not (models / "served_resnet.onnx").exists()


def test_cli_export_unknown_name_is_a_usage_error() -> None:
    """Check that export refuses a name outside the exportable models before importing torch (exit code 2)."""
    result = _fails("export", "resnet19")
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "Error: Invalid value for 'NAME': 'resnet19' is not one of "
        + ", ".join(repr(name) for name in sorted(_option("export", "name").type.choices))
        + ".\n"
    )


def test_cli_export_writes_model_with_taps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that `cnncodes export NAME --weights random -o FILE` writes the ONNX file and names its taps."""
    monkeypatch.setenv("CNNCODES_MODELS_DIR", str(tmp_path / "models"))
    output = tmp_path / "resnet18.onnx"
    result = _invoke("-q", "export", "resnet18", "--weights", "random", "-o", output)
    assert result.exit_code == 0, result.output
    taps = [tap["name"] for tap in json.loads((cards_dir() / "resnet18.json").read_text())["taps"]]
    assert result.stdout == f"resnet18: {output} (taps: {', '.join(taps)})\n"
    assert output.stat().st_size > 40_000_000  # resnet18's 11.7 M float32 weights


# --- extract and the cache ---------------------------------------------------------------------------------------


def test_cli_extract_options_reach_the_library(image_dir: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    """Check that extract's options (repeated --layer, --no-relu, --gem-p...) give exactly the library's codes."""
    output = tmp_path / "codes.h5"
    result = _invoke(
        "-q", "extract", image_dir, "--model", tiny_onnx, "-l", "conv1", "-l", "conv2", "--pooling", "gem",
        "--gem-p", "2", "--no-relu", "--normalize", "l2", "--dtype", "float16", "--no-cache", "-o", output,
    )  # fmt: skip
    assert result.exit_code == 0
    options = dict(layer=("conv1", "conv2"), pooling="gem", gem_p=2.0, relu=False, normalize="l2", dtype="float16")
    library = cnncodes.extract(image_dir, model=str(tiny_onnx), **options, cache=False, progress=False)
    content = read_codes_file(output)
    np.testing.assert_array_equal(content.codes, library.codes)
    assert content.spec == library.spec
    stored = content.spec["options"]
    assert {name: stored[name] for name in options} == {**options, "layer": ["conv1", "conv2"]}


@pytest.mark.parametrize(("flags", "relu"), [((), None), (("--relu",), True), (("--no-relu",), False)])
def test_cli_relu_is_tri_state(image_dir: Path, tiny_onnx: Path, tmp_path: Path, flags: tuple, relu: bool) -> None:
    """Check that neither flag leaves relu to the backbone (None), --relu forces it on and --no-relu off."""
    output = tmp_path / "codes.h5"
    result = _invoke(
        "-q", "extract", image_dir, "--model", tiny_onnx, "-l", "conv1", *flags, "--no-cache", "-o", output
    )
    assert result.exit_code == 0
    assert read_codes_file(output).spec["options"]["relu"] is relu


def test_cli_cache_options_choose_the_cache(image_dir: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    """Check that --no-cache writes no cache, no option writes the default cache, --cache DIR writes DIR."""
    args = ("-q", "extract", image_dir, "--model", tiny_onnx, "-l", "conv2")
    assert _invoke(*args, "--no-cache").exit_code == 0
    assert cnncodes.cache_info() == []
    assert _invoke(*args).exit_code == 0
    assert [info.n_codes for info in cnncodes.cache_info()] == [6]
    assert _invoke(*args, "--cache", tmp_path / "elsewhere").exit_code == 0
    assert [info.n_codes for info in cnncodes.cache_info(tmp_path / "elsewhere")] == [6]


def test_cli_cache_and_no_cache_exclude_each_other(image_dir: Path, tmp_path: Path) -> None:
    """Check that --cache DIR with --no-cache is a usage error (exit code 2)."""
    result = _fails("extract", image_dir, "--cache", tmp_path, "--no-cache")
    assert result.exit_code == 2
    assert result.stderr.endswith("Error: --cache and --no-cache exclude each other\n")


def test_cli_extract_json_and_codes_file(image_dir: Path, tmp_path: Path, cache_path: Path) -> None:
    """Check `cnncodes extract --format json -o`: stdout is one JSON object, the codes file matches the library."""
    out = tmp_path / "codes.h5"
    result = _invoke("-q", "extract", image_dir, "-o", out, "--cache", cache_path, "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "images": 6,
        "from_cache": 0,
        "failed": 0,
        "n_features": 1280,
        "output": str(out),
        "failures": [],
    }
    assert result.stderr.startswith("6 images, 0 from cache, 0 failed")
    content = read_codes_file(out)
    library = cnncodes.extract(image_dir, cache=cache_path, progress=False)
    np.testing.assert_array_equal(content.codes, library.codes)
    assert content.labels.tolist() == library.labels.tolist() and content.class_names == ["cats", "dogs"]
    assert content.spec["layers"][0]["tap"] == "penultimate"


def test_cli_extract_failures_exit_3(tmp_path: Path) -> None:
    """Check that a run with bad files lists each on stderr, prints the summary line and exits 3."""
    files = make_bad_files(tmp_path / "mixed")
    result = CliRunner().invoke(cli, ["-q", "extract", str(tmp_path / "mixed"), "--no-cache"], catch_exceptions=False)
    assert result.exit_code == 3
    assert f"failed: {files['empty']}: empty file (0 bytes)\n" in result.stderr
    assert result.stdout.startswith(f"{len(files)} images, 0 from cache, 4 failed")


def test_cli_extract_strict_stops_at_the_first_bad_image(tmp_path: Path) -> None:
    """Check that --strict (on_error='raise') ends the run with exit code 1 and one 'Error:' line naming the file."""
    files = make_bad_files(tmp_path / "mixed")
    result = _fails("-q", "extract", files["empty"], "--strict", "--no-cache")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {files['empty']}: empty file (0 bytes)\n"


def test_cli_cache_commands(image_dir: Path, cache_path: Path) -> None:
    """Check `cnncodes cache ls / info / verify / compact / rm` on a real cache."""
    for layer in ("stage4", "penultimate"):
        assert _invoke("-q", "extract", image_dir, "--layer", layer, "--cache", cache_path).exit_code == 0
    listing = json.loads(_invoke("cache", "ls", "--cache", cache_path, "--format", "json").stdout)
    assert sorted(row["spec"]["tap"] for row in listing) == ["penultimate", "stage4"]
    assert all(row["n_codes"] == 6 for row in listing)
    table = _invoke("cache", "ls", "--cache", cache_path).stdout
    assert table.splitlines()[0].split() == ["fingerprint", "model", "layer", "features", "codes", "shards", "MB"]
    stage4 = next(row["fingerprint"] for row in listing if row["spec"]["tap"] == "stage4")
    info = _invoke("cache", "info", stage4[:8], "--cache", cache_path).stdout
    assert info.startswith(f"{stage4}\n") and "codes: 6 x 80" in info
    result = _invoke("cache", "verify", "--cache", cache_path)
    assert result.exit_code == 0 and result.stdout == "2 feature sets verified, 0 damaged shards\n"
    result = _invoke("cache", "compact", "--cache", cache_path)
    assert result.exit_code == 0 and "-> 1 (6 codes)" in result.stdout
    result = _invoke("cache", "rm", stage4[:8], "--cache", cache_path)
    assert result.exit_code == 0 and result.stdout == "removed 1 feature sets (0.0 MB)\n"
    result = _fails("cache", "rm", "--cache", cache_path)
    assert result.exit_code == 2 and result.stderr.endswith("Error: give a FINGERPRINT prefix or --all\n")


# --- train, evaluate, predict, sweep -----------------------------------------------------------------------------


def test_cli_train_table_and_json(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check that train prints its summary line, or with --format json a JSON object, and saves the model."""
    tree = session_tree(tmp_path_factory)
    codes_cache = session_cache(tmp_path_factory)
    model = tmp_path / "model.skops"
    result = _invoke("-q", "train", tree, "--head", "logistic", "--cv", "3", "-o", model, "--cache", codes_cache)
    assert result.exit_code == 0
    pattern = (
        r"trained logistic on 40 images, 2 classes, cross-validated accuracy [0-9.]+ \(C=[0-9.e-]+\), "
        rf"0 failed -> {re.escape(str(model))}\n"
    )
    assert re.fullmatch(pattern, result.stdout)
    result = _invoke("-q", "train", tree, "--cv", "3", "-o", model, "--cache", codes_cache, "--format", "json")
    summary = json.loads(result.stdout)
    assert summary["output"] == str(model) and summary["n_samples"] == 40 and summary["failed"] == 0
    assert set(summary["best_params"]) == {"C"} and 0.5 <= summary["cv_accuracy"] <= 1
    assert cnncodes.load_model(model).class_names == ["ants", "bees"]


def test_cli_train_with_fixed_params(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check that `--param C=0.001` fixes the head's hyperparameter instead of searching."""
    tree = session_tree(tmp_path_factory)
    codes_cache = session_cache(tmp_path_factory)
    model = tmp_path / "fixed.skops"
    result = _invoke("-q", "train", tree, "--param", "C=0.001", "-o", model, "--cache", codes_cache)
    assert result.exit_code == 0 and "cross-validated" not in result.stdout
    head = cnncodes.load_model(model).pipeline.named_steps["head"]
    assert head.named_steps["clf"].C == 0.001


def test_cli_train_unknown_param_is_one_line_error(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check that a hyperparameter the head lacks fails with exit code 1 and one line."""
    tree = session_tree(tmp_path_factory)
    codes_cache = session_cache(tmp_path_factory)
    result = _fails("-q", "train", tree, "--param", "alpha=1", "-o", tmp_path / "m.skops", "--cache", codes_cache)
    assert result.exit_code == 1
    assert result.stderr == "Error: The head 'logistic' has no parameter 'alpha'; its main one is C.\n"


def test_cli_train_malformed_param_is_a_usage_error(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check that --param without NAME=VALUE is a usage error (exit code 2) naming the option."""
    tree = session_tree(tmp_path_factory)
    result = _fails("train", tree, "--param", "C", "-o", tmp_path / "m.skops")
    assert result.exit_code == 2
    assert result.stderr.endswith("Error: Invalid value for '--param': expected NAME=VALUE, got 'C'\n")


def test_cli_train_unlabelled_folder_is_one_line_error(tmp_path: Path) -> None:
    """Check that training on a folder without class subfolders fails in one line."""
    (tmp_path / "flat").mkdir()
    result = _fails("-q", "train", tmp_path / "flat", "-o", tmp_path / "m.skops")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'flat'}: no labels; give a folder with one subfolder per class, "
        "or a CSV of path,label rows\n"
    )


def test_cli_evaluate_table_and_json(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check that evaluate prints the report table, or its figures as JSON, with the run options passed through."""
    codes_cache = session_cache(tmp_path_factory)
    model_file = session_model(tmp_path_factory)
    args = ("-q", "evaluate", model_file, HYMENOPTERA / "val", "--cache", codes_cache, "--device", "cpu")
    figures = json.loads(_invoke(*args, "--batch-size", "4", "--threads", "1", "--format", "json").stdout)
    assert {"accuracy", "balanced_accuracy", "macro_f1", "n_samples", "per_class"} <= set(figures)
    assert figures["n_samples"] == 153 and figures["failed"] == 0 and figures["accuracy"] >= 0.8
    result = _invoke(*args)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"samples 153  accuracy {figures['accuracy']:.4f}  balanced accuracy ")


def test_cli_predict_no_cache_gives_the_same_scores(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check that predict --no-cache recomputes the codes, writes no cache and gives the cached run's scores."""
    codes_cache = session_cache(tmp_path_factory)
    model_file = session_model(tmp_path_factory)
    images = [str(path) for path in sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:3]]
    cached = _invoke("-q", "predict", model_file, *images, "--cache", codes_cache, "--format", "json").stdout
    fresh = _invoke("-q", "predict", model_file, *images, "--no-cache", "--format", "json").stdout
    assert json.loads(fresh) == json.loads(cached)
    assert cnncodes.cache_info() == []


def test_cli_predict_formats(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check predict's table, csv and json output for one image."""
    codes_cache = session_cache(tmp_path_factory)
    model_file = session_model(tmp_path_factory)
    image = sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[0]
    args = ("-q", "predict", model_file, image, "--cache", codes_cache)
    output = json.loads(_invoke(*args, "--format", "json", "--top-k", "1").stdout)
    assert output["score"] == "probability" and output["predictions"][0]["path"] == str(image)
    (top,) = output["predictions"][0]["top"]
    csv = _invoke(*args, "--format", "csv").stdout.splitlines()
    assert csv[0] == "path,rank,class,score" and len(csv) == 3
    assert csv[1] == f"{json.dumps(str(image))},1,{json.dumps(top['class'])},{top['score']:.6f}"
    table = _invoke(*args).stdout.splitlines()
    assert table[0].split() == ["path", "top", "1", "(probability)", "top", "2", "(probability)"]
    assert table[2].startswith(str(image)) and f"{top['class']} {top['score']:.3f}" in table[2]


def test_cli_predict_bad_image_exit_3(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check that predict lists a bad image on stderr and exits 3 after predicting the good ones."""
    model_file = session_model(tmp_path_factory)
    files = make_bad_files(tmp_path / "mixed")
    result = _invoke("-q", "predict", model_file, files["good"], files["empty"], "--no-cache", "--format", "json")
    assert result.exit_code == 3
    assert result.stderr == f"failed: {files['empty']}: empty file (0 bytes)\n"
    assert [p["path"] for p in json.loads(result.stdout)["predictions"]] == [str(files["good"])]


def test_cli_sweep_table_and_json(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check that sweep ranks layer x head rows with a recommendation, and gives the same rows as JSON."""
    tree = session_tree(tmp_path_factory)
    codes_cache = session_cache(tmp_path_factory)
    args = ("-q", "sweep", tree, "--layers", "penultimate", "--cv", "3", "--no-baseline", "--cache", codes_cache)
    result = _invoke(*args, "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert {row["features"] for row in document["rows"]} == {"penultimate"}
    assert {row["head"] for row in document["rows"]} == {
        inspect.signature(cnncodes.sweep).parameters["heads"].default[0]
    }
    table = _invoke(*args).stdout.splitlines()
    assert table[0].split() == [
        "rank",
        "model",
        "features",
        "pooling",
        "head",
        "params",
        "dims",
        "accuracy",
        "balanced",
    ]
    assert table[-1] == document["recommendation"]


# --- search: classify, similar, duplicates --------------------------------------------------------------------


def test_cli_classify_formats(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check classify's json (predict's shape), csv and table output: an ant photo is an 'ant'."""
    image = HYMENOPTERA / "val" / "ants" / "1124525276_816a07c17f.jpg"
    args = ("-q", "classify", image, "--cache", session_cache(tmp_path_factory))
    output = json.loads(_invoke(*args, "--format", "json", "--top-k", "2").stdout)
    assert output["score"] == "probability" and [p["path"] for p in output["predictions"]] == [str(image)]
    first, second = output["predictions"][0]["top"]
    assert first["class"] == "ant" and first["score"] > second["score"] > 0
    csv = _invoke(*args, "--format", "csv", "--top-k", "1").stdout
    assert csv == f"path,rank,class,score\n{json.dumps(str(image))},1,\"ant\",{first['score']:.6f}\n"
    table = _invoke(*args, "--top-k", "1").stdout.splitlines()
    assert table[0].split() == ["path", "top", "1", "(probability)"]
    assert table[2] == f"{image}  ant {first['score']:.3f}"


def test_cli_classify_model_without_logits_is_one_line_error(tiny_onnx: Path, tmp_path: Path) -> None:
    """Check that classify with a model that has no logits tap exits 1 with one line naming the model."""
    result = _fails("classify", HYMENOPTERA / "val" / "bees", "--model", tiny_onnx, "--no-cache")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tiny_onnx}: no 'logits' tap, so no ImageNet classes; its taps are conv1, relu1, conv2, gap, "
        "vector. Run 'cnncodes models' for models with one\n"
    )


@pytest.fixture(scope="module")
def val_codes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A codes file of hymenoptera val (default codes), extracted through the session cache."""
    path = tmp_path_factory.mktemp("search") / "val.h5"
    cnncodes.extract(HYMENOPTERA / "val", cache=session_cache(tmp_path_factory), output=path, progress=False)
    return path


def test_cli_similar_formats(val_codes_file: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check similar's json, csv and table output: an indexed query is its own nearest, at cosine 1."""
    query = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[2]
    args = ("-q", "similar", val_codes_file, query, "--top-k", "2", "--cache", session_cache(tmp_path_factory))
    output = json.loads(_invoke(*args, "--format", "json").stdout)
    ((result),) = output["results"]
    assert result["query"] == str(query) and [n["path"] for n in result["neighbors"]][0] == str(query)
    nearest, second = result["neighbors"]
    assert nearest["score"] == pytest.approx(1, abs=1e-5) and second["score"] < nearest["score"]
    csv = _invoke(*args, "--format", "csv").stdout
    row = f"{json.dumps(str(query))},2,{json.dumps(second['path'])},{second['score']:.6f}"
    assert csv == f"query,rank,path,score\n{json.dumps(str(query))},1,{json.dumps(str(query))},1.000000\n{row}\n"
    table = _invoke(*args).stdout.splitlines()
    assert table[0].split() == ["query", "rank", "similar", "image", "cosine"] and len(table) == 4
    assert table[2].split() == [str(query), "1", str(query), "1.000"]


def test_cli_similar_faiss_gives_the_exact_neighbours(val_codes_file: Path) -> None:
    """Check that --method faiss prints the same neighbours as exact search on a codes file."""
    args = ("-q", "similar", val_codes_file, val_codes_file, "--top-k", "3", "--format", "json")
    exact = json.loads(_invoke(*args).stdout)["results"]
    approximate = json.loads(_invoke(*args, "--method", "faiss").stdout)["results"]
    same = [
        [n["path"] for n in a["neighbors"]] == [n["path"] for n in b["neighbors"]] for a, b in zip(exact, approximate)
    ]
    assert len(exact) == 153 and sum(same) >= 150


def test_cli_similar_mismatched_feature_sets_is_one_line_error(val_codes_file: Path) -> None:
    """Check that a --layer other than the index codes file's exits 1 with one line naming the file."""
    query = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[0]
    result = _fails("similar", val_codes_file, query, "--layer", "stage4")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: the options given: codes of efficientnet_lite0 stage4, but {val_codes_file} holds "
        "efficientnet_lite0 penultimate (tap differs); make both with the same model and options\n"
    )


def test_cli_similar_missing_query_is_a_usage_error(val_codes_file: Path, tmp_path: Path) -> None:
    """Check that a query path that does not exist is click's usage error (exit 2) naming it."""
    result = _fails("similar", val_codes_file, tmp_path / "nope.jpg")
    assert result.exit_code == 2 and f"'{tmp_path / 'nope.jpg'}' does not exist" in result.stderr


def test_cli_duplicates_formats_and_summary(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Check duplicates' json, csv and table output and its summary line on stderr for a copied photo."""
    photos = sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:4]
    for photo in photos:
        (tmp_path / photo.name).write_bytes(photo.read_bytes())
    copy = tmp_path / "zz_copy.jpg"
    copy.write_bytes(photos[1].read_bytes())
    args = ("-q", "duplicates", tmp_path, "--cache", session_cache(tmp_path_factory))
    group = [str(tmp_path / photos[1].name), str(copy)]
    result = _invoke(*args, "--format", "json")
    assert json.loads(result.stdout) == {"groups": [group]}
    assert result.stderr == "5 images, 1 groups of near-duplicates (2 images)\n"
    csv = _invoke(*args, "--format", "csv").stdout
    assert csv == f"group,path\n1,{json.dumps(group[0])}\n1,{json.dumps(group[1])}\n"
    width = max(len(path) for path in group)
    table = _invoke(*args).stdout
    assert table == f"group  path\n-----  {'-' * width}\n1      {group[0]}\n1      {group[1]}\n"


def test_cli_duplicates_bad_threshold_is_a_usage_error(tmp_path: Path) -> None:
    """Check that --threshold outside (0, 1] is click's usage error (exit 2)."""
    result = _fails("duplicates", tmp_path, "--threshold", "1.5")
    assert result.exit_code == 2 and "--threshold" in result.stderr
