"""Storage that refuses writes loses nothing: a read-only, missing or full cache, a full disk under -o.

The faults are real: a cache folder without write permission (in a process that permissions
apply to), a cache under /proc, and a full tmpfs mounted in a private mount namespace.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cnncodes
from cnncodes.codesfile import read_codes_file
from tests.conftest import HYMENOPTERA, as_an_ordinary_user, build_tiny_model

PHOTOS = sorted((HYMENOPTERA / "val/ants").glob("*.jpg"))[:3]
NOT_WRITTEN = "the cache is not being written ({})"


def _tree(folder: Path) -> Path:
    for photo in PHOTOS:
        (folder / "ants").mkdir(parents=True, exist_ok=True)
        (folder / "ants" / photo.name).write_bytes(photo.read_bytes())
    return folder


def _cli(model: Path, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", "cnncodes", "extract", "--model", str(model), "-l", "conv2", *map(str, args)]


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


def _in_a_full_disk(
    folder: Path, *commands: list[str], free_kb: int = 0
) -> list[tuple[subprocess.CompletedProcess[str], list[str]]]:
    """Run each command with a 4 MB tmpfs at ``folder`` filled to ``free_kb`` free (a private mount namespace:
    nothing leaks); each run comes with what the disk held after it."""
    folder.mkdir()
    filler = f"dd if=/dev/zero of={shlex.quote(str(folder / 'filler'))} bs=1024"
    script = f"mount -t tmpfs -o size=4m tmpfs {shlex.quote(str(folder))} || exit 99\n"
    script += f"{filler} count={4096 - free_kb} 2>/dev/null\n" if free_kb else f"{filler} 2>/dev/null\n"
    for number, command in enumerate(commands):
        script += f"{shlex.join(command)} >{folder.parent}/out{number} 2>{folder.parent}/err{number}\n"
        script += f"echo $? >{folder.parent}/rc{number}; ls -A {shlex.quote(str(folder))} >{folder.parent}/ls{number}\n"
    namespace = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    subprocess.run([*namespace, "sh", "-c", script], check=True)
    runs = []
    for number, command in enumerate(commands):
        code, stdout = int((folder.parent / f"rc{number}").read_text()), (folder.parent / f"out{number}").read_text()
        stderr, listing = (folder.parent / f"err{number}").read_text(), (folder.parent / f"ls{number}").read_text()
        runs.append((subprocess.CompletedProcess(command, code, stdout, stderr), listing.split()))
    return runs


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def test_a_read_only_cache_gives_one_warning_and_the_codes(tmp_path: Path) -> None:
    """Check that a cache folder the user cannot write gives exactly one warning, exit 0 and the -o file, and
    that a read-only cache holding the codes still serves them."""
    tree, model, cache = _tree(tmp_path / "tree"), build_tiny_model(tmp_path / "tiny.onnx"), tmp_path / "cache"
    cache.mkdir(mode=0o555)
    command = as_an_ordinary_user(*_cli(model, tree, "--cache", cache, "-o", tmp_path / "codes.h5"))
    empty = subprocess.run(command, capture_output=True, text=True)
    assert empty.returncode == 0, empty.stderr
    assert _warnings(empty.stderr) == [f"warning: {cache}: " + NOT_WRITTEN.format("Permission denied")]
    assert len(read_codes_file(tmp_path / "codes.h5").paths) == len(PHOTOS) and list(cache.iterdir()) == []
    cache.chmod(0o755)
    subprocess.run(_cli(model, tree, "--cache", cache), check=True, capture_output=True)
    _read_only(cache)
    filled = subprocess.run(command, capture_output=True, text=True)
    assert filled.returncode == 0, filled.stderr
    assert f"{len(PHOTOS)} images, {len(PHOTOS)} from cache, 0 failed" in filled.stdout
    assert _warnings(filled.stderr) == [f"warning: {cache}: " + NOT_WRITTEN.format("Permission denied")]


def test_a_read_only_cache_holding_the_models_folder_still_computes_new_codes(tmp_path: Path) -> None:
    """Check that with CNNCODES_CACHE read-only, its models folder (the built default backbone) included, a new image
    is computed with one warning and exit 0 (before: TensorRT's engine folder could not be made, a traceback)."""
    tree, cache = _tree(tmp_path / "tree"), tmp_path / "cache"
    environment = {**os.environ, "CNNCODES_CACHE": str(cache)}
    environment.pop("CNNCODES_MODELS_DIR", None)
    extract = [sys.executable, "-m", "cnncodes", "extract", str(tree)]
    subprocess.run(extract, check=True, capture_output=True, env=environment)
    assert (cache / "models" / "efficientnet_lite0.onnx").is_file()
    _read_only(cache)
    (tree / "bees").mkdir()
    (tree / "bees" / "new.jpg").write_bytes(sorted((HYMENOPTERA / "val/bees").glob("*.jpg"))[0].read_bytes())
    command = as_an_ordinary_user(*extract, "-o", str(tmp_path / "codes.h5"))
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr
    assert f"{len(PHOTOS) + 1} images, {len(PHOTOS)} from cache, 0 failed" in done.stdout
    assert _warnings(done.stderr) == [f"warning: {cache}: " + NOT_WRITTEN.format("Permission denied")]
    assert "Traceback" not in done.stderr and len(read_codes_file(tmp_path / "codes.h5").paths) == len(PHOTOS) + 1


def test_extract_into_a_cache_under_proc_warns_once_and_returns_the_codes(tmp_path: Path) -> None:
    """Check that a cache that cannot even be created (under /proc) gives one warning for files (file-key memo,
    key index and shards all refused) and the same codes as no cache."""
    tree = _tree(tmp_path / "tree")
    with pytest.warns(UserWarning) as caught:
        result = cnncodes.extract(tree, cache="/proc/cnncodes-cache", output=tmp_path / "codes.h5", progress=False)
    assert [str(w.message) for w in caught] == [
        "/proc/cnncodes-cache: " + NOT_WRITTEN.format("No such file or directory")
    ]
    assert result.codes.shape == (len(PHOTOS), 1280) and (tmp_path / "codes.h5").is_file()
    np.testing.assert_allclose(result.codes, cnncodes.extract(tree, cache=False, progress=False).codes, rtol=1e-6)


def test_a_full_disk_under_the_cache_or_under_o_loses_nothing(tmp_path: Path) -> None:
    """Check a full disk: under the cache, one warning and the codes in -o; under -o, a one-line error, exit 1, no
    partial file, and the codes computed are in the cache (the next run reads them all)."""
    tree, model = _tree(tmp_path / "tree"), build_tiny_model(tmp_path / "tiny.onnx")
    cache, full = tmp_path / "cache", tmp_path / "full"
    full_cache = _cli(model, tree, "--cache", full / "cache", "-o", tmp_path / "codes.h5")
    full_output = _cli(model, tree, "--cache", cache, "-o", full / "codes.h5")
    (under_cache, _), (under_output, left_on_disk) = _in_a_full_disk(full, full_cache, full_output)
    assert under_cache.returncode == 0, under_cache.stderr
    assert _warnings(under_cache.stderr) == [
        f"warning: {full / 'cache'}: " + NOT_WRITTEN.format("No space left on device")
    ]
    assert len(read_codes_file(tmp_path / "codes.h5").paths) == len(PHOTOS)
    assert under_output.returncode == 1
    error = f"Error: {full / 'codes.h5'}: cannot write (No space left on device); nothing was written"
    assert under_output.stderr.splitlines()[-1] == error
    assert set(left_on_disk) <= {"filler", "cache"}  # no codes.h5, no temporary file
    rerun = subprocess.run(_cli(model, tree, "--cache", cache), capture_output=True, text=True)
    assert f"{len(PHOTOS)} images, {len(PHOTOS)} from cache, 0 failed" in rerun.stdout


_FILL_THE_CACHE = """
import sys, warnings
from pathlib import Path
import numpy as np
from cnncodes.cache import CodeCache
warnings.simplefilter("always")
cache = CodeCache(sys.argv[1])
feature_set = cache.feature_set({"tap": "demo"})
with warnings.catch_warnings(record=True) as caught:
    feature_set.add([f"k{i}" for i in range(1024)], np.ones((1024, 1280), np.float32))
    cache.flush()
print(len(feature_set.keys()), [str(w.message) for w in caught], sorted(Path(sys.argv[1]).rglob(".tmp-*")))
"""


def test_a_disk_that_fills_while_a_shard_is_written_is_one_warning(tmp_path: Path) -> None:
    """Check that a cache disk with room for one shard of two (2.6 MB each) keeps the first, warns once for the
    second, and leaves no temporary file (libhdf5 can crash closing a file whose writes failed: shards are
    built in memory)."""
    command = [sys.executable, "-c", _FILL_THE_CACHE, str(tmp_path / "full" / "cache")]
    ((run, _),) = _in_a_full_disk(tmp_path / "full", command, free_kb=3500)
    assert run.returncode == 0, run.stderr
    cache = tmp_path / "full" / "cache"
    assert run.stdout.splitlines() == [f"512 ['{cache}: " + NOT_WRITTEN.format("No space left on device") + "'] []"]


_COMPACT_ON_A_FULL_DISK = """
import sys
from pathlib import Path
import numpy as np
import cnncodes
from cnncodes.cache import CodeCache
root = Path(sys.argv[1])
cache = CodeCache(root, shard_size=256)
feature_set = cache.feature_set({"tap": "demo"})
feature_set.add([f"k{i}" for i in range(512)], np.ones((512, 1280), np.float32))
cache.flush()
with open(root.parent / "more-filler", "wb") as filler:
    try:
        while True:
            filler.write(bytes(1 << 16))
            filler.flush()
    except OSError:
        pass
try:
    cnncodes.compact_cache(root)
except cnncodes.OutputError as error:
    print(error)
print(len(CodeCache(root).feature_set({"tap": "demo"}).keys()), sorted(root.rglob(".tmp-*")))
"""


def test_compact_on_a_full_disk_refuses_before_it_starts(tmp_path: Path) -> None:
    """Check that compacting two shards where the disk has no room for their merge is a one-line OutputError,
    with both shards still served and no temporary file (a write failing inside a merge must not pass for a
    damaged shard)."""
    command = [sys.executable, "-c", _COMPACT_ON_A_FULL_DISK, str(tmp_path / "full" / "cache")]
    ((run, _),) = _in_a_full_disk(tmp_path / "full", command, free_kb=4000)
    assert run.returncode == 0, run.stderr
    refusal, served = run.stdout.splitlines()
    assert refusal.startswith(f"{tmp_path / 'full' / 'cache'}/") and "not enough free space to compact (" in refusal
    assert refusal.endswith("MB needed); free some space, nothing was changed") and served == "512 []"
