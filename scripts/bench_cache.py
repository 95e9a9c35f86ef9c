"""Benchmark: cached lookups against feature sets of 10^4 .. 10^7 codes (time, peak RSS, index rebuild).

Each size is a feature set written in the documented format-1 shard layout (shards of 512
rows: ``/keys`` real sha256 hex strings, ``/codes`` 1280 float32 left unallocated) with no
key index, as an older cnncodes leaves it. Then, each in a fresh process:

1. rebuild: the first look at the feature set builds its index from the shards (timed);
2. lookup: ``FeatureSet.contains`` of 1,000 present and 1,000 absent keys (median of 5 key
   sets), then ``FeatureSet.get`` of the 1,000 present ones, and the process's peak RSS.

The last line is JSON: ``lookup_growth`` (lookup time at the largest size over the smallest),
``rss_growth_mb`` (peak RSS of the lookup process, largest minus smallest) and the rebuild
seconds of every size. Goals: lookup_growth <= 3, rss_growth_mb <= 100, rebuild of 10^6 < 60 s.

    python scripts/bench_cache.py                      # 10^4, 10^5, 10^6
    python scripts/bench_cache.py --sizes 1e4,1e5,1e6,1e7
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = {"model": "bench", "tap": "penultimate", "dtype": "float32"}
SHARD_ROWS = 512
WIDTH = 1280
N_PRESENT = N_ABSENT = 1000
REPEATS = 5


def _key(i: int) -> str:
    return hashlib.sha256(b"image-%d" % i).hexdigest()


def build(root: Path, n_codes: int) -> None:
    """Write a feature set of ``n_codes`` codes in the documented layout, without an index."""
    import h5py
    import numpy as np

    from cnncodes import CodeCache

    fs = CodeCache(root).feature_set(SPEC)
    fs.shards_dir.mkdir(parents=True)
    document = {"fingerprint": fs.fingerprint, "format_version": 1, "spec": SPEC}
    (fs.path / "spec.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    for number, start in enumerate(range(0, n_codes, SHARD_ROWS)):
        keys = np.array([_key(i) for i in range(start, min(start + SHARD_ROWS, n_codes))], dtype="S64")
        with h5py.File(fs.shards_dir / f"20260101T000000-1-{number:06d}-bench.h5", "w") as handle:
            handle.attrs.update({"format": "cnncodes-shard", "format_version": 1, "fingerprint": fs.fingerprint})
            handle.create_dataset("keys", data=keys)
            handle.create_dataset("codes", shape=(len(keys), WIDTH), dtype=np.float32)  # left unallocated


def rebuild(root: Path) -> dict[str, float]:
    """Time the first look at a feature set without an index (it builds the index)."""
    from cnncodes import CodeCache

    start = time.perf_counter()
    CodeCache(root).feature_set(SPEC).refresh()
    return {"rebuild_s": time.perf_counter() - start}


def lookup(root: Path, n_codes: int) -> dict[str, float]:
    """Time cached lookups of present and absent keys and a read of the present ones; peak RSS."""
    import numpy as np

    from cnncodes import CodeCache

    rng = np.random.default_rng(0)
    fs = CodeCache(root).feature_set(SPEC)
    times, first = [], 0.0
    for repeat in range(REPEATS + 1):
        present = [_key(int(i)) for i in rng.choice(n_codes, N_PRESENT, replace=False)]
        absent = [hashlib.sha256(b"absent-%d-%d" % (repeat, i)).hexdigest() for i in range(N_ABSENT)]
        start = time.perf_counter()
        found = fs.contains(present + absent)
        elapsed = time.perf_counter() - start
        assert found[:N_PRESENT].all() and not found[N_PRESENT:].any(), "lookup gave wrong answers"
        first = first or elapsed
        times.append(elapsed) if repeat else None
    start = time.perf_counter()
    codes = fs.get(present)
    read_s = time.perf_counter() - start
    assert codes.shape == (N_PRESENT, WIDTH)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"first_lookup_s": first, "lookup_s": statistics.median(times), "read_s": read_s, "peak_rss_mb": peak_mb}


def _child(step: str, root: Path, n_codes: int) -> dict[str, float]:
    """Run one step in a fresh process (peak RSS is per process)."""
    command = [sys.executable, __file__, "--step", step, "--root", str(root), "--n", str(n_codes)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e4,1e5,1e6", help="Comma-separated feature-set sizes (codes).")
    parser.add_argument("--dir", type=Path, default=None, help="Where to build the caches (default: a temp folder).")
    parser.add_argument("--step", choices=("build", "rebuild", "lookup"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "build":
        start = time.perf_counter()
        build(args.root, args.n)
        print(json.dumps({"build_s": time.perf_counter() - start}))
        return
    if args.step:
        print(json.dumps(rebuild(args.root) if args.step == "rebuild" else lookup(args.root, args.n)))
        return
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench-cache-", dir=args.dir))
    rows = {}
    try:
        for n_codes in sizes:
            root = folder / f"cache-{n_codes}"
            rows[n_codes] = {
                **_child("build", root, n_codes),
                **_child("rebuild", root, n_codes),
                **_child("lookup", root, n_codes),
            }
            shutil.rmtree(root)
            print(f"{n_codes}: {json.dumps(rows[n_codes])}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("| codes | shards | build | index rebuild | lookup 1k+1k keys (first) | get 1k codes | peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n_codes, row in rows.items():
        print(
            f"| {n_codes:,} | {-(-n_codes // SHARD_ROWS):,} | {row['build_s']:.1f} s | {row['rebuild_s']:.2f} s "
            f"| {row['lookup_s'] * 1e3:.1f} ms ({row['first_lookup_s'] * 1e3:.1f} ms) | {row['read_s'] * 1e3:.0f} ms "
            f"| {row['peak_rss_mb']:.0f} MB |"
        )
    small, large = rows[sizes[0]], rows[sizes[-1]]
    summary = {
        "sizes": sizes,
        "lookup_ms": {str(n): round(r["lookup_s"] * 1e3, 2) for n, r in rows.items()},
        "rebuild_s": {str(n): round(r["rebuild_s"], 2) for n, r in rows.items()},
        "lookup_growth": round(large["lookup_s"] / small["lookup_s"], 2),
        "lookup_growth_of": f"{sizes[-1]} over {sizes[0]} codes",
        "rss_growth_mb": round(large["peak_rss_mb"] - small["peak_rss_mb"], 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
