"""Distributed extraction throughput: images/s serially, and on a LocalCluster of 1 and of 2 worker processes.

Every run takes the same images into a fresh cache; the cluster start-up is excluded (the
clusters are started first). Prints a table; the last line is a JSON object with the
images/s of each run, the ratio two_workers / one_worker and two_workers / serial.
Without --partition-size the library's default task size is used.

Run: python scripts/bench_dask.py [--data DIR ...] [--partition-size N] [--limit N]
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
    parser.add_argument("--partition-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="At most this many images.")
    args = parser.parse_args()
    paths = sorted(str(p) for folder in args.data for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"})
    paths = paths[: args.limit]
    cnncodes.extract(paths[:4], cache=False, progress=False)  # the model file exists before workers need it
    rates = {}
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        serial = cnncodes.extract(paths, cache=cache, progress=False)
        serial_rate = len(serial.paths) / (time.perf_counter() - start)
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
    print(f"{len(paths)} images, {cores} cores, partitions of {args.partition_size or 'the default size'}")
    print("| workers | threads each | images/s |\n|---:|---:|---:|")
    print(f"| serial | {cores} | {serial_rate:.1f} |")
    for n_workers, rate in rates.items():
        print(f"| {n_workers} | {max(1, cores // n_workers)} | {rate:.1f} |")
    print(
        json.dumps(
            {
                "one_worker": round(rates[1], 1),
                "two_workers": round(rates[2], 1),
                "serial": round(serial_rate, 1),
                "ratio": round(rates[2] / rates[1], 3),
                "ratio_vs_serial": round(rates[2] / serial_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
