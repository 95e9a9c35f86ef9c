"""End-to-end tests of extraction on the real default backbone and real images."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import cnncodes
from cnncodes.cache import CodeCache, read_codes_file
from cnncodes.cli import cli
from cnncodes.errors import ImageDecodeError, InputError, UnknownLayerError
from cnncodes.engine import ExtractionOptions, Extractor
from tests.badfiles import make_bad_files
from tests.conftest import HYMENOPTERA

pytestmark = pytest.mark.usefixtures("default_backbone")


def test_extract_folder_labels_and_paths(image_dir: Path, cache_path: Path) -> None:
    """Check that a class-per-folder tree gives codes, labels, class names and the paths as given."""
    result = cnncodes.extract(image_dir, cache=cache_path, progress=False)
    assert result.codes.shape == (6, 1280) and result.codes.dtype == np.float32
    assert result.class_names == ["cats", "dogs"] and result.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert result.paths[0] == str(image_dir / "cats" / "cats_0.jpg")
    assert (result.codes >= 0).all() and np.abs(result.codes).sum(axis=1).min() > 0
    assert result.summary().startswith("6 images, 0 from cache, 0 failed")


def test_extract_bad_files_reported_and_rows_aligned(tmp_path: Path, cache_path: Path) -> None:
    """Check that bad files become failures with reasons, good ones keep their codes, and no zero rows appear."""
    files = make_bad_files(tmp_path / "mixed")
    inputs = [str(p) for p in files.values()]
    result = cnncodes.extract(inputs, cache=cache_path, progress=False)
    failed = dict(result.failures)
    assert set(failed) == {str(files[k]) for k in ("truncated", "empty", "garbage", "bomb")}
    assert failed[str(files["empty"])] == "empty file (0 bytes)"
    assert result.paths == [p for p in inputs if p not in failed]
    assert result.indices.tolist() == [i for i, p in enumerate(inputs) if p not in failed]
    alone = cnncodes.extract([str(files["good"])], cache=False, progress=False)
    np.testing.assert_allclose(result.codes[0], alone.codes[0], rtol=1e-5, atol=1e-6)
    assert np.abs(result.codes).sum(axis=1).min() > 0


def test_extract_strict_stops_at_first_bad_file(tmp_path: Path) -> None:
    """Check that on_error='raise' raises the one-line error of the first bad file."""
    files = make_bad_files(tmp_path / "mixed")
    with pytest.raises(ImageDecodeError, match=re.escape(f"{files['truncated']}: cannot decode image")):
        cnncodes.extract([files["good"], files["truncated"]], cache=False, on_error="raise", progress=False)


def test_extract_unknown_layer_fails_before_work(image_dir: Path, cache_path: Path) -> None:
    """Check that an unknown layer is an error before anything is computed or cached."""
    with pytest.raises(UnknownLayerError, match=re.escape("Unknown layer 'stage9' for backbone 'efficientnet_lite0'.")):
        cnncodes.extract(image_dir, layer="stage9", cache=cache_path)
    assert not cache_path.exists()


def test_extract_missing_folder(tmp_path: Path) -> None:
    """Check that a missing input is one line naming it."""
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'nope'}: no such file or folder")):
        cnncodes.extract(tmp_path / "nope")


def test_extract_cache_hit_across_folders(image_dir: Path, tmp_path: Path, cache_path: Path) -> None:
    """Check that the same files in another folder (another project) are served from the cache, unchanged."""
    copy = tmp_path / "other_project"
    shutil.copytree(image_dir, copy)
    options = ExtractionOptions()
    first = Extractor(options, cache=cache_path, progress=False).run(image_dir)
    extractor = Extractor(options, cache=cache_path, progress=False)
    second = extractor.run(copy)
    assert second.n_from_cache == 6 and extractor.n_inferred == 0
    np.testing.assert_array_equal(first.codes, second.codes)


def test_extract_reuses_single_layer_codes_when_concatenating(image_dir: Path, cache_path: Path) -> None:
    """Check that each tap is cached on its own: asking for two taps reuses one computed before."""
    single = cnncodes.extract(image_dir, layer="stage4", cache=cache_path, progress=False)
    both = cnncodes.extract(image_dir, layer=["stage4", "penultimate"], cache=cache_path, progress=False)
    np.testing.assert_array_equal(both.codes[:, :80], single.codes)
    again = cnncodes.extract(image_dir, layer=["stage4", "penultimate"], cache=cache_path, progress=False)
    assert again.n_from_cache == 6
    stage4 = [fs for fs in CodeCache(cache_path) if fs.spec["tap"] == "stage4"][0]
    assert len(stage4.keys()) == 6 and stage4.info().n_shards == 1  # not written twice


@pytest.mark.parametrize(
    "layer,pooling,grid,views,combine,n_features",
    [
        ("penultimate", "avg", None, "none", "mean", 1280),
        ("stage4", "avg", None, "none", "mean", 80),
        ("stage4", "max", 2, "none", "mean", 320),
        ("stage4", "gem", None, "flip", "mean", 80),
        ("stage6", "avg", None, "5crop", "none", 5 * 192),
        (["stage3", "penultimate"], "avg", 3, "10crop", "max", 40 * 9 + 1280),
        ("penultimate", "avg", None, "razavian16", "sum", 1280),
        ("logits", "avg", None, "none", "mean", 1000),
    ],
    ids=[
        "penultimate",
        "stage4",
        "max-grid2",
        "gem-flip",
        "5crop-none",
        "two-taps-grid-10crop",
        "razavian16",
        "logits",
    ],
)
def test_extract_options_give_documented_dimensions(
    image_dir: Path, layer, pooling, grid, views, combine, n_features
) -> None:
    """Check that views, pooling, grid and several taps give the documented code length."""
    result = cnncodes.extract(
        sorted(image_dir.rglob("*.jpg"))[:2],
        layer=layer,
        pooling=pooling,
        grid=grid,
        views=views,
        combine=combine,
        cache=False,
        progress=False,
    )
    assert result.codes.shape == (2, n_features)
    assert len(result.feature_names) == n_features


def test_extract_normalization(image_dir: Path) -> None:
    """Check that l2 and power normalization give unit rows, and power changes the direction."""
    paths = sorted(image_dir.rglob("*.jpg"))[:3]
    plain = cnncodes.extract(paths, cache=False, progress=False).codes
    l2 = cnncodes.extract(paths, normalize="l2", cache=False, progress=False).codes
    power = cnncodes.extract(paths, normalize="power", cache=False, progress=False).codes
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(l2, plain / np.linalg.norm(plain, axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(power, axis=1), 1, rtol=1e-5)
    assert not np.allclose(power, l2)


def test_extract_arrays_and_pil_images(image_dir: Path, cache_path: Path) -> None:
    """Check that an N x H x W x 3 array, a list of arrays and PIL images give the same codes."""
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(image_dir.rglob("*.jpg"))[:3]])
    from_array = cnncodes.extract(pixels, cache=cache_path, progress=False)
    from_pil = cnncodes.extract([Image.fromarray(p) for p in pixels], cache=cache_path, progress=False)
    assert from_pil.n_from_cache == 3  # same pixels, same key
    np.testing.assert_array_equal(from_array.codes, from_pil.codes)
    assert from_array.paths == ["<array 0>", "<array 1>", "<array 2>"]


def test_extract_float16_storage(image_dir: Path, cache_path: Path) -> None:
    """Check that float16 storage gives the same codes in memory as from the cache."""
    first = cnncodes.extract(image_dir, dtype="float16", cache=cache_path, progress=False)
    second = cnncodes.extract(image_dir, dtype="float16", cache=cache_path, progress=False)
    assert second.n_from_cache == 6
    np.testing.assert_array_equal(first.codes, second.codes)


def test_extract_csv_with_labels(image_dir: Path, tmp_path: Path) -> None:
    """Check that a CSV of path,label rows (relative to the CSV) gives labels."""
    csv_path = image_dir / "list.csv"
    csv_path.write_text("path,label\ncats/cats_0.jpg,cat\ndogs/dogs_1.jpg,dog\ncats/cats_2.jpg,cat\n")
    result = cnncodes.extract(csv_path, cache=False, progress=False)
    assert result.class_names == ["cat", "dog"] and result.labels.tolist() == [0, 1, 0]


def _extract_script(paths_file: Path, cache_dir: Path, out: Path) -> list[str]:
    code = (
        "import json, sys\n"
        "import cnncodes\n"
        "from cnncodes.cache import CodeCache\n"
        f"paths = open({str(paths_file)!r}).read().splitlines()\n"
        f"r = cnncodes.extract(paths, cache=CodeCache({str(cache_dir)!r}, shard_size=32), progress=False)\n"
        f"open({str(out)!r}, 'w').write(json.dumps({{'from_cache': r.n_from_cache, 'n': len(r.paths), 'failures': r.failures}}))\n"
        f"import numpy; numpy.save({str(out) + '.npy'!r}, r.codes)\n"
    )
    return [sys.executable, "-c", code]


@pytest.fixture(scope="module")
def real_paths(tmp_path_factory: pytest.TempPathFactory) -> Path:
    paths = sorted(str(p) for p in (HYMENOPTERA / "train").rglob("*") if p.is_file())
    paths_file = tmp_path_factory.mktemp("lists") / "paths.txt"
    paths_file.write_text("\n".join(paths))
    return paths_file


def test_extract_resumes_after_kill_9(real_paths: Path, tmp_path: Path) -> None:
    """Check that a kill -9 mid-run leaves a readable cache, and a rerun finishes, equals a clean run, and skips completed shards."""
    cache_dir = tmp_path / "cache"
    process = subprocess.Popen(_extract_script(real_paths, cache_dir, tmp_path / "killed.json"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(cache_dir.glob("*/shards/[!.]*.h5"))) < 2:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed.json").exists(), "the run finished before it could be killed"
    fs = next(iter(CodeCache(cache_dir)))
    assert fs.verify() == []
    n_done = len(fs.keys())
    assert n_done >= 64
    subprocess.run(_extract_script(real_paths, cache_dir, tmp_path / "rerun.json"), check=True)
    rerun = json.loads((tmp_path / "rerun.json").read_text())
    assert rerun == {"from_cache": n_done, "n": 245, "failures": []}
    subprocess.run(_extract_script(real_paths, tmp_path / "clean_cache", tmp_path / "clean.json"), check=True)
    np.testing.assert_allclose(
        np.load(str(tmp_path / "rerun.json") + ".npy"),
        np.load(str(tmp_path / "clean.json") + ".npy"),
        rtol=1e-5,
        atol=1e-6,
    )


def test_extract_two_processes_same_cache(real_paths: Path, tmp_path: Path) -> None:
    """Check that two extract processes on the same images and cache both finish with equal codes and a sound cache."""
    cache_dir = tmp_path / "cache"
    runs = [subprocess.Popen(_extract_script(real_paths, cache_dir, tmp_path / f"run{i}.json")) for i in range(2)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    codes = [np.load(str(tmp_path / f"run{i}.json") + ".npy") for i in range(2)]
    np.testing.assert_array_equal(codes[0], codes[1])
    fs = next(iter(CodeCache(cache_dir)))
    assert fs.verify() == [] and len(fs.keys()) == 245
    after = cnncodes.extract(real_paths.read_text().splitlines(), cache=cache_dir, progress=False)
    assert after.n_from_cache == 245


def test_cli_extract_json_and_codes_file(image_dir: Path, tmp_path: Path, cache_path: Path) -> None:
    """Check `cnncodes extract --json -o`: last stdout line is JSON, and the codes file matches the library."""
    out = tmp_path / "codes.h5"
    result = CliRunner().invoke(
        cli,
        ["-q", "extract", str(image_dir), "-o", str(out), "--cache", str(cache_path), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary == {
        "images": 6,
        "from_cache": 0,
        "failed": 0,
        "n_features": 1280,
        "output": str(out),
        "failures": [],
    }
    content = read_codes_file(out)
    library = cnncodes.extract(image_dir, cache=cache_path, progress=False)
    np.testing.assert_array_equal(content.codes, library.codes)
    assert content.labels.tolist() == library.labels.tolist() and content.class_names == ["cats", "dogs"]
    assert content.spec["layers"][0]["tap"] == "penultimate"


def test_cli_extract_failures_exit_3(tmp_path: Path) -> None:
    """Check that a run with bad files lists them, ends with the summary line, and exits 3."""
    files = make_bad_files(tmp_path / "mixed")
    result = CliRunner().invoke(cli, ["-q", "extract", str(tmp_path / "mixed"), "--no-cache"], catch_exceptions=False)
    assert result.exit_code == 3
    assert f"failed: {files['empty']}: empty file (0 bytes)\n" in result.stderr
    assert result.stdout.startswith(f"{len(files)} images, 0 from cache, 4 failed")


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that the README's Python examples run as written, from a folder beside ../shared."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").symlink_to(HYMENOPTERA.parents[1])
    monkeypatch.chdir(work)
    result = CliRunner().invoke(
        cli, ["-q", "extract", "../shared/data/hymenoptera/val", "-o", "codes.h5"], catch_exceptions=False
    )
    assert result.exit_code == 0
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_extract_recomputes_a_file_whose_content_changed(image_dir: Path, cache_path: Path) -> None:
    """Check that a file rewritten in place gets a new key (the memo never serves a stale key) and new codes."""
    target = image_dir / "cats" / "cats_0.jpg"
    before = cnncodes.extract([target], cache=cache_path, progress=False)
    Image.open(image_dir / "dogs" / "dogs_0.jpg").save(target)
    after = cnncodes.extract([target], cache=cache_path, progress=False)
    assert after.n_from_cache == 0 and after.keys != before.keys
    assert not np.allclose(after.codes, before.codes)


def test_cli_cache_commands(image_dir: Path, cache_path: Path) -> None:
    """Check `cnncodes cache ls / info / verify / compact / rm` on a real cache."""
    runner = CliRunner()
    for layer in ("stage4", "penultimate"):
        assert (
            runner.invoke(
                cli, ["-q", "extract", str(image_dir), "--layer", layer, "--cache", str(cache_path)]
            ).exit_code
            == 0
        )
    listing = json.loads(
        runner.invoke(cli, ["cache", "ls", "--cache", str(cache_path), "--json"], catch_exceptions=False).stdout
    )
    assert sorted(row["spec"]["tap"] for row in listing) == ["penultimate", "stage4"]
    assert all(row["n_codes"] == 6 for row in listing)
    table = runner.invoke(cli, ["cache", "ls", "--cache", str(cache_path)], catch_exceptions=False).stdout
    assert table.splitlines()[0].split() == ["fingerprint", "model", "layer", "features", "codes", "shards", "MB"]
    stage4 = next(row["fingerprint"] for row in listing if row["spec"]["tap"] == "stage4")
    info = runner.invoke(cli, ["cache", "info", stage4[:8], "--cache", str(cache_path)], catch_exceptions=False).stdout
    assert info.startswith(f"{stage4}\n") and "codes: 6 x 80" in info
    result = runner.invoke(cli, ["cache", "verify", "--cache", str(cache_path)], catch_exceptions=False)
    assert result.exit_code == 0 and result.stdout == "2 feature sets verified, 0 damaged shards\n"
    result = runner.invoke(cli, ["cache", "compact", "--cache", str(cache_path)], catch_exceptions=False)
    assert result.exit_code == 0 and "-> 1 (6 codes)" in result.stdout
    result = runner.invoke(cli, ["cache", "rm", stage4[:8], "--cache", str(cache_path)], catch_exceptions=False)
    assert result.stdout.startswith("removed 1 feature sets")
    assert runner.invoke(cli, ["cache", "rm", "--cache", str(cache_path)]).exit_code == 2


def test_extract_progress_line_on_stderr(image_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Check that progress=True draws one refreshed line with images/s, from-cache and failed counts, and False draws none."""
    cnncodes.extract(image_dir, cache=False, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\r") and err.endswith("\n")
    assert re.search(r"6/6 images +[0-9.]+ images/s  0 from cache  0 failed  ETA 0:00", err)
    cnncodes.extract(image_dir, cache=False, progress=False)
    assert capsys.readouterr().err == ""
