"""Distributed extraction throughput: images/s on a LocalCluster of 1 and of 2 worker processes.

Both runs take the same images into fresh caches; the cluster start-up is excluded (the
clusters are started first). Prints a table; the last line is a JSON object with the
images/s of each run and the ratio two_workers / one_worker.

Run: python scripts/bench_dask.py [--data DIR ...] [--partition-size N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from dask.distributed import Client, LocalCluster

import cnncodes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="*", type=Path, default=[SHARED / "hymenoptera", SHARED / "chest_xray" / "test"]
    )
    parser.add_argument("--partition-size", type=int, default=100)
    args = parser.parse_args()
    paths = sorted(str(p) for folder in args.data for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"})
    cnncodes.extract(paths[:4], cache=False, progress=False)  # the model file exists before workers need it
    rates = {}
    cores = os.cpu_count() or 1
    for n_workers in (1, 2):
        threads = max(1, cores // n_workers)
        with LocalCluster(n_workers=n_workers, threads_per_worker=threads, dashboard_address=":0") as cluster, Client(
            cluster
        ) as client, tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            result = cnncodes.extract(
                paths, cache=cache, client=client, partition_size=args.partition_size, progress=False
            )
            rates[n_workers] = len(result.paths) / (time.perf_counter() - start)
    print(f"{len(paths)} images, {cores} cores, partitions of {args.partition_size}")
    print("| workers | threads each | images/s |\n|---:|---:|---:|")
    for n_workers, rate in rates.items():
        print(f"| {n_workers} | {max(1, cores // n_workers)} | {rate:.1f} |")
    print(
        json.dumps(
            {
                "one_worker": round(rates[1], 1),
                "two_workers": round(rates[2], 1),
                "ratio": round(rates[2] / rates[1], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
