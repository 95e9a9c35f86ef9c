"""Fuzzing as part of the suite: a short coverage-guided run of every target, and every crash input found so far.

``scripts/fuzz.py`` runs the same targets for longer (see the README's Reliability section).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from cnncodes.backbones import _parse_card
from cnncodes.codesfile import read_codes_file
from cnncodes.errors import CacheFormatError, ModelFileError, WeightsFormatError
from cnncodes.persist import load_model
from cnncodes.weights import load_state_dict
from tests.fuzz_targets import FUZZ_DATA, TARGETS, seeds

REPO = Path(__file__).resolve().parents[1]
# The reader each file-reading target reaches, and the one error it may raise.
READERS = {
    "weights": (load_state_dict, WeightsFormatError),
    "model_file": (lambda path: load_model(path, check_backbone=False), ModelFileError),
    "codes_file": (read_codes_file, CacheFormatError),
    "card": (_parse_card, ModelFileError),
}
# Failures found that are not exceptions escaping a reader and are open, with the reproducers under
# tests/data/fuzz-open (see the README's Reliability section). Add an entry only with its reproducer.
KNOWN_OPEN: dict[str, tuple[str, ...]] = {}
CRASHES = sorted(p for p in FUZZ_DATA.glob("*/crash-*"))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_short_coverage_guided_run_finds_no_crash(target: str, tmp_path: Path) -> None:
    """Check that a short atheris run of each target (fixed seed) executes and finds no exception but CnnCodesError,
    and no hang, out-of-memory or signal but those known and open (KNOWN_OPEN)."""
    command = [sys.executable, str(REPO / "scripts/fuzz.py"), "--target", target, "--seconds", "3", "--seed", "1"]
    command += ["--timeout", "5", "--corpus", str(tmp_path / "corpus"), "--artifacts", str(tmp_path / "crashes")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180, check=True)
    summary = json.loads(done.stdout.splitlines()[-1])
    result = summary["targets"][target]
    found = [failure["error"] for failure in result["crashes"] + result["timeouts"]]
    assert [error for error in found if not error.startswith(KNOWN_OPEN.get(target, ()))] == [], done.stdout
    assert summary["targets"][target]["executions"] > len(seeds(target))
    assert summary["targets"][target]["coverage"] > 0


@pytest.mark.parametrize("path", CRASHES, ids=[f"{p.parent.name}/{p.name}" for p in CRASHES])
def test_every_crash_found_by_fuzzing_is_now_a_project_error(path: Path, tmp_path: Path) -> None:
    """Check each input that once escaped a reader with a foreign exception: now its reader's own one-line error."""
    target = path.parent.name
    TARGETS[target](path.read_bytes())  # raises anything but CnnCodesError
    if target in READERS:
        reader, error = READERS[target]
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        with warnings.catch_warnings(), pytest.raises(error, match=f"^{copy}: "):
            warnings.simplefilter("ignore")
            reader(copy)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_are_read_without_error(target: str) -> None:
    """Check that every target's seeds are valid inputs (the fuzzer mutates from working files)."""
    for data in seeds(target):
        TARGETS[target](data)
    if target in READERS and target not in ("codes_file",):
        reader, _ = READERS[target]
        for path in sorted((FUZZ_DATA / target).glob("seed*")):
            assert reader(path)
