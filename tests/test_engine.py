"""End-to-end tests of extraction on the real default backbone and real images."""

from __future__ import annotations

import json
import logging
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
from PIL import Image

import cnncodes
from cnncodes.cache import CodeCache
from cnncodes.errors import ImageDecodeError, InputError
from cnncodes.engine import ExtractionOptions, Extractor
from cnncodes.fastdecode import prepare_views
from cnncodes.images import Preprocessing
from cnncodes.params import DECODERS, decode_workers_for, inference_streams_for, n_cores
from tests.conftest import HYMENOPTERA

pytestmark = pytest.mark.usefixtures("default_backbone")


def test_extractor_cache_hit_across_folders(image_dir: Path, tmp_path: Path, cache_path: Path) -> None:
    """Check that the same files in another folder (another project) come from the cache, without inference."""
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


def _extract_script(paths_file: Path, cache_dir: Path, out: Path) -> list[str]:
    code = (
        "import json, sys\n"
        "import cnncodes\n"
        "from cnncodes.cache import CodeCache\n"
        f"paths = open({str(paths_file)!r}).read().splitlines()\n"
        f"r = cnncodes.extract(paths, cache=CodeCache({str(cache_dir)!r}, shard_size=32), progress=False)\n"
        "summary = {'from_cache': r.n_from_cache, 'n': len(r.paths), 'failures': r.failures}\n"
        f"open({str(out)!r}, 'w').write(json.dumps(summary))\n"
        f"import numpy; numpy.save({str(out) + '.npy'!r}, r.codes)\n"
    )
    return [sys.executable, "-c", code]


@pytest.fixture(scope="module")
def real_paths(tmp_path_factory: pytest.TempPathFactory) -> Path:
    paths = sorted(str(p) for p in (HYMENOPTERA / "train").rglob("*") if p.is_file())
    paths_file = tmp_path_factory.mktemp("lists") / "paths.txt"
    paths_file.write_text("\n".join(paths))
    return paths_file


def _wait_for_committed_shards(cache_dir: Path, n_shards: int, process: subprocess.Popen) -> None:
    """Return once ``n_shards`` shards are committed in the cache (the event a kill must follow), polling the folder."""
    deadline = time.monotonic() + 300
    while len(list(cache_dir.glob("*/shards/[!.]*.h5"))) < n_shards:
        assert process.poll() is None, "the run ended before it committed the shards to wait for"
        assert time.monotonic() < deadline, "no shard committed in 300 s"
        time.sleep(0.02)


def test_extract_resumes_after_kill_9(real_paths: Path, tmp_path: Path) -> None:
    """Check that kill -9 after two committed shards leaves a sound cache; a rerun skips them and equals a clean run."""
    cache_dir = tmp_path / "cache"
    process = subprocess.Popen(_extract_script(real_paths, cache_dir, tmp_path / "killed.json"))
    _wait_for_committed_shards(cache_dir, 2, process)
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


def test_extract_recomputes_a_file_whose_content_changed(image_dir: Path, cache_path: Path) -> None:
    """Check that a file rewritten in place gets a new key (the memo never serves a stale key) and new codes."""
    target = image_dir / "cats" / "cats_0.jpg"
    before = cnncodes.extract([target], cache=cache_path, progress=False)
    Image.open(image_dir / "dogs" / "dogs_0.jpg").save(target)
    after = cnncodes.extract([target], cache=cache_path, progress=False)
    assert after.n_from_cache == 0 and after.keys != before.keys
    assert not np.allclose(after.codes, before.codes)


def test_extract_progress_line_on_stderr(image_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Check that progress=True draws one refreshed line on stderr (rate, from cache, failed); False draws none."""
    cnncodes.extract(image_dir, cache=False, progress=True)
    err = capfd.readouterr().err
    assert err.startswith("\r0/6 images  ? images/s  0 from cache  0 failed  ETA ?") and err.count("\n") == 1
    assert re.search(r"\r6/6 images +[0-9.]+ images/s  0 from cache  0 failed  ETA 00:00\n$", err)
    cnncodes.extract(image_dir, cache=False, progress=False)
    assert capfd.readouterr().err == ""


def test_extractor_layers_settings_and_feature_names() -> None:
    """Check that layer=None is the backbone's default tap, a list of layers a tuple, and run settings are validated."""
    assert Extractor(ExtractionOptions(), cache=False).layers == ("penultimate",)
    both = Extractor(ExtractionOptions(layer=["stage4", "penultimate"]), cache=False)
    assert both.layers == ("stage4", "penultimate") and both.n_features == 80 + 1280
    assert both.feature_names()[79:81] == ["efficientnet_lite0_stage4_79", "efficientnet_lite0_penultimate_0"]
    message = "The 'device' parameter of CNNCodes must be one of 'auto', 'cpu', 'cuda', 'tensorrt'. Got 'gpu' instead."
    with pytest.raises(InputError, match="^" + re.escape(message) + "$"):
        Extractor(ExtractionOptions(), device="gpu", owner="CNNCodes")
    with pytest.raises(TypeError, match="^" + re.escape("Extractor() got unexpected settings quiet") + "$"):
        Extractor(ExtractionOptions(), quiet=True)


@pytest.mark.parametrize("decoder", DECODERS)
def test_extractor_codes_of_pixels_equal_a_run(image_dir: Path, decoder: str) -> None:
    """Check that codes of already cut model inputs equal the codes of a run on the same images, by either decoder."""
    options = ExtractionOptions(views="flip", layer="stage4", decoder=decoder)
    extractor = Extractor(options, cache=False, progress=False)
    paths = sorted(image_dir.rglob("*.jpg"))[:2]
    pre = Preprocessing(224, 0.875, "bicubic", views="flip", decoder=decoder)
    pixels = np.stack([view for path in paths for view in prepare_views(path, pre, str(path))])
    np.testing.assert_allclose(extractor.codes_of_pixels(pixels), extractor.run(paths).codes, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("device", "precision", "n_workers"), [("auto", "fp32", None), ("cpu", "int8", None), ("cpu", "fp32", 3)]
)
def test_extractor_decode_threads_follow_the_device_the_session_chose(
    image_dir: Path, caplog: pytest.LogCaptureFixture, device: str, precision: str, n_workers: int | None
) -> None:
    """Check that decode threads are balanced for the device the session runs on (auto ends on the CPU here)."""
    extractor = Extractor(ExtractionOptions(precision=precision), device=device, n_workers=n_workers, cache=False)
    with caplog.at_level(logging.DEBUG, logger="cnncodes"):
        assert extractor.run(sorted(image_dir.rglob("*.jpg"))[:2]).codes.shape == (2, 1280)
    expected = n_workers or decode_workers_for(None, "cpu", precision, n_cores(), "fast")
    n_streams = inference_streams_for(None, "cpu", n_cores())[0]
    assert f"decoding on {expected} threads beside {n_streams} inference calls on cpu" in caplog.messages
    assert extractor.n_workers == (n_workers or decode_workers_for(None, device, precision, n_cores()))


def test_batches_inferred_side_by_side_land_on_their_own_images(image_dir: Path, tmp_path: Path) -> None:
    """Check that batches of one image run two at a time, with a broken file among them, give every image its own
    row, exactly as one call at a time and as the image's views alone, and count each image once."""
    paths = sorted(image_dir.rglob("*.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    inputs = [*paths[:3], broken, *paths[3:]]
    side_by_side = Extractor(ExtractionOptions(), cache=False, batch_size=1, progress=False)
    one_at_a_time = Extractor(ExtractionOptions(), cache=False, batch_size=1, n_threads=1, progress=False)
    results = [side_by_side.run(inputs), one_at_a_time.run(inputs)]
    assert side_by_side._get_session().n_streams == n_cores() and one_at_a_time._get_session().n_streams == 1
    for result in results:
        assert result.paths == [str(path) for path in paths] and [name for name, _ in result.failures] == [str(broken)]
    np.testing.assert_allclose(results[0].codes, results[1].codes, rtol=1e-6, atol=1e-7)
    pre = Preprocessing(224, 0.875, "bicubic", decoder=ExtractionOptions().decoder)
    alone = [one_at_a_time.codes_of_pixels(np.stack(prepare_views(path, pre, str(path)))) for path in paths]
    np.testing.assert_allclose(results[0].codes, np.concatenate(alone), rtol=1e-6, atol=1e-7)
    assert side_by_side.n_inferred == len(paths)


def test_a_run_stopped_by_a_bad_image_keeps_every_batch_computed_before_it(tmp_path: Path) -> None:
    """Check that with on_error="raise" the batches inferred side by side before the bad image reach the cache: a
    rerun without it serves them (images 0-7 of batches of 2, the bad one tenth) and computes only the rest."""
    paths = sorted((HYMENOPTERA / "val" / "ants").glob("*.jpg"))[:12]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    cache = tmp_path / "cache"
    settings = {"cache": cache, "batch_size": 2, "progress": False}
    with pytest.raises(ImageDecodeError, match=re.escape(str(broken))):
        Extractor(ExtractionOptions(), on_error="raise", **settings).run([*paths[:9], broken, *paths[9:]])
    rerun = Extractor(ExtractionOptions(), **settings)
    result = rerun.run(paths)
    assert result.n_from_cache == 8 and rerun.n_inferred == 4


def test_extraction_plan_completed_by_another_process(image_dir: Path, cache_path: Path) -> None:
    """Check the plan's methods dask uses: cache hits, partitions, codes read back from another writer, failures."""
    paths = sorted(image_dir.rglob("*.jpg"))
    extractor = Extractor(ExtractionOptions(layer="stage4"), cache=cache_path, progress=False)
    extractor.run(paths[:2])
    plan = extractor.plan([*paths, paths[0].parent / "gone.jpg"])
    assert plan.n_from_cache == 2 and plan.todo == [2, 3, 4, 5] and list(plan.failures) == [6]
    assert plan.partitions(3) == [[2, 3, 4], [5]] and plan.sources([5]) == [paths[5]]
    worker = Extractor(ExtractionOptions(layer="stage4"), cache=CodeCache(cache_path), progress=False)
    worker.run(plan.sources([2, 3, 4]))  # as a dask worker would, into the shared cache
    plan.fail_with(5, "lost with its worker")
    plan.count_computed(3)
    plan.read_back([2, 3, 4])
    result = extractor.finish(plan)
    assert result.failures == [
        (str(paths[5]), "lost with its worker"),
        (str(plan.inputs.names[6]), result.failures[1][1]),
    ]
    assert result.failures[1][1] == "cannot read file (No such file or directory)" and result.n_from_cache == 2
    serial = Extractor(ExtractionOptions(layer="stage4"), cache=False).run(paths[:5])
    np.testing.assert_array_equal(result.codes, serial.codes)


def test_extractor_refuses_a_grid_larger_than_the_tap(image_dir: Path) -> None:
    """Check that --grid N above the tap's spatial size is one line naming the tap and its size, not huge codes."""
    from click.testing import CliRunner

    from cnncodes.cli import cli

    expected = (
        "The 'grid' parameter must be at most 14, the size of tap 'stage4' of efficientnet_lite0 (14 x 14). "
        "Got 200 instead."
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        Extractor(ExtractionOptions(layer="stage4", grid=200), cache=False, progress=False)
    assert Extractor(ExtractionOptions(layer="stage4", grid=14), cache=False, progress=False).n_features == 80 * 14 * 14
    result = CliRunner().invoke(cli, ["extract", str(image_dir), "--layer", "stage4", "--grid", "200", "--no-cache"])
    assert (result.exit_code, result.stderr) == (1, f"Error: {expected}\n")
