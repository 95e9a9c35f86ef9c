"""Run every fuzz target under atheris for a while; print executions and crashes per target (last line: JSON).

Usage::

    python scripts/fuzz.py --seconds 60                 # each target 60 s
    python scripts/fuzz.py --seconds 30 --target image  # one target
    python scripts/fuzz.py --runs 2000                  # each target 2,000 executions

Each target runs in its own process (libFuzzer, coverage-guided) on a corpus folder that starts from
the target's seeds and keeps what raised coverage. A crash (an exception that is not a
``CnnCodesError``, a signal, or running out of memory) or a hang (``--timeout``) writes its input to
``--artifacts`` and the target restarts on the
same corpus until its time is used, so one known crash does not hide the next. Turn each crash
into a regression test: put the file under ``tests/data/fuzz/<target>/`` (tests/test_fuzz.py runs
every file there).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fuzz_targets import TARGETS  # noqa: E402 (the repo root first)

_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_PROGRESS = re.compile(r"^#(\d+)\s", re.MULTILINE)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_EXCEPTION = re.compile(r"=== Uncaught Python exception: ===\n(.*)")


def _kind(error: str) -> str:
    """What makes two failures the same: the message without the numbers that vary (time, memory used)."""
    return re.sub(r"\d+", "N", error.split(" (used:")[0])


def run_target(
    target: str,
    *,
    seconds: float,
    runs: int | None,
    corpus: Path,
    artifacts: Path,
    max_len: int,
    seed: int = 0,
    timeout_s: int = 20,
) -> dict[str, object]:
    """Fuzz ``target`` for ``seconds`` (or ``runs`` executions), restarting after each crash.

    Returns
    -------
    dict
        ``executions``, ``crashes`` (each distinct error once, with its reproducer file), ``timeouts`` (the
        same for inputs that hang), ``seconds`` and ``coverage`` (libFuzzer's cov).
    """
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    executions, coverage, start = 0, 0, time.monotonic()
    crashes: list[dict[str, str]] = []
    timeouts: list[dict[str, str]] = []  # inputs that ran longer than ``timeout_s``: hangs, not exceptions
    while True:
        left = seconds - (time.monotonic() - start)
        if (runs is None and left < 1) or (runs is not None and executions >= runs):
            break
        limit = [f"-runs={runs - executions}"] if runs is not None else [f"-max_total_time={int(left)}"]
        command = [sys.executable, "-m", "tests.fuzz_targets", target, *limit, f"-max_len={max_len}"]
        command += [f"-artifact_prefix={artifacts}/{target}-", "-rss_limit_mb=2048", f"-timeout={timeout_s}"]
        command.append("-malloc_limit_mb=1073741824")  # one absurd malloc fails as MemoryError, which readers catch
        command.append(f"-seed={seed}")
        command.append(str(corpus))
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        done = subprocess.run(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, check=False
        )
        log = done.stdout  # atheris prints the Python exception on stdout, libFuzzer its lines on stderr
        finished = _DONE.search(log)
        counts = [int(n) for n in _PROGRESS.findall(log)]
        executions += int(finished.group(1)) if finished else (max(counts) if counts else 0)
        found = re.findall(r"cov: (\d+)", log)
        coverage = max([coverage, *map(int, found)])
        written = _ARTIFACT.findall(log)
        if done.returncode != 0:
            if not written:  # not a crash of the target: a broken harness; stop rather than loop
                crashes.append({"error": f"exit {done.returncode}: {log.strip().splitlines()[-1:]}", "file": ""})
                break
            kind = _EXCEPTION.search(log)
            error = kind.group(1) if kind else (re.findall(r"==\d+== ERROR: libFuzzer: (.*)", log) or ["?"])[0]
            found_list = timeouts if error.startswith("timeout") else crashes
            if not any(_kind(crash["error"]) == _kind(error) for crash in found_list):
                found_list.append({"error": error, "file": written[0]})  # the same failure again is not counted
        elif runs is None and finished is None:
            break
    elapsed = round(time.monotonic() - start, 1)
    return {
        "executions": executions,
        "crashes": crashes,
        "timeouts": timeouts,
        "seconds": elapsed,
        "coverage": coverage,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="time per target (default 60)")
    parser.add_argument("--runs", type=int, default=None, help="executions per target instead of a time")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="only these (repeatable)")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus folder (default: a new temporary one)")
    parser.add_argument("--artifacts", type=Path, default=Path("fuzz-crashes"), help="where crash inputs go")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer's random seed (default 0: a new one)")
    parser.add_argument("--timeout", type=int, default=20, help="seconds after which one input is a hang")
    parser.add_argument("--max-len", type=int, default=8192, help="largest input in bytes (default 8192)")
    args = parser.parse_args()
    corpus_root = args.corpus or Path(tempfile.mkdtemp(prefix="cnncodes-corpus-"))
    results = {}
    for target in args.target or list(TARGETS):
        result = run_target(
            target,
            seconds=args.seconds,
            runs=args.runs,
            corpus=corpus_root / target,
            artifacts=args.artifacts.resolve(),
            max_len=args.max_len,
            seed=args.seed,
            timeout_s=args.timeout,
        )
        results[target] = result
        rate = result["executions"] / max(result["seconds"], 1e-9)
        print(
            f"{target:<11} {result['executions']:>9,} executions  {rate:>7.0f}/s  "
            f"cov {result['coverage']:>5}  {len(result['crashes'])} crashes  {len(result['timeouts'])} hangs",
            flush=True,
        )
        for kind, label in (("crashes", "crash"), ("timeouts", "hang")):
            for crash in result[kind]:
                print(f"    {label}: {crash['error']}  ({crash['file']})", flush=True)
    total = sum(r["executions"] for r in results.values())
    n_crashes = sum(len(r["crashes"]) for r in results.values())
    n_hangs = sum(len(r["timeouts"]) for r in results.values())
    print(f"total       {total:>9,} executions  {n_crashes} crashes  {n_hangs} hangs")
    summary = {"executions": total, "crashes": n_crashes, "hangs": n_hangs, "targets": results}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
