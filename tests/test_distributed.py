"""Distributed extraction and model selection on a real dask LocalCluster of 2 worker processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from dask.distributed import Client, LocalCluster

import cnncodes
from cnncodes.cache import CodeCache
from cnncodes.errors import InputError
from tests.conftest import HYMENOPTERA

pytestmark = pytest.mark.usefixtures("default_backbone")


@pytest.fixture(scope="module")
def client() -> Client:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as dask_client:
            yield dask_client


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> cnncodes.ExtractionResult:
    return cnncodes.extract(HYMENOPTERA / "val", cache=tmp_path_factory.mktemp("serial"), progress=False)


def test_extract_on_cluster_equals_serial(client: Client, serial, tmp_path: Path) -> None:
    """Check that a 2-worker run gives the serial codes, paths and labels; both workers write into one feature set."""
    result = cnncodes.extract(
        HYMENOPTERA / "val", cache=tmp_path / "cache", client=client, partition_size=20, progress=False
    )
    assert result.paths == serial.paths and result.labels.tolist() == serial.labels.tolist()
    np.testing.assert_allclose(result.codes, serial.codes, rtol=0, atol=1e-6)
    feature_set = next(iter(CodeCache(tmp_path / "cache")))
    writers = {shard.name.split("-")[1] for shard in (feature_set.path / "shards").glob("*.h5")}
    assert len(writers) == 2, "both worker processes wrote shards"
    assert feature_set.verify() == [] and len(feature_set.keys()) == 153
    again = cnncodes.extract(HYMENOPTERA / "val", cache=tmp_path / "cache", client=client, progress=False)
    assert again.n_from_cache == 153


def test_extract_on_cluster_survives_killed_worker(client: Client, tmp_path: Path) -> None:
    """Check that killing a worker process mid-run still gives every image exactly once, equal to a serial run."""
    cache_dir = tmp_path / "cache"
    paths = sorted(str(p) for p in (HYMENOPTERA / "train").rglob("*.jpg"))
    pids = list(client.run(os.getpid).values())
    killed: list[int] = []

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(cache_dir.glob("*/shards/[!.]*.h5")):
            time.sleep(0.02)
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    result = cnncodes.extract(paths, cache=cache_dir, client=client, partition_size=10, progress=False)
    killer.join()
    assert killed and result.n_failed == 0 and len(result.paths) == len(paths) == len(set(result.keys))
    serial = cnncodes.extract(paths, cache=tmp_path / "serial", progress=False)
    np.testing.assert_allclose(result.codes, serial.codes, rtol=0, atol=1e-6)
    assert pids[0] not in client.run(os.getpid).values()  # the nanny started a new worker process


def test_extract_on_cluster_refuses_unshared_cache(tmp_path: Path) -> None:
    """Check the shared-cache check against a real worker that sees another filesystem (its own mount namespace)."""
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    with LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as cluster, Client(cluster) as dask_client:
        worker_cli = (
            f"{sys.executable} -m distributed.cli.dask_worker {cluster.scheduler_address} --nworkers 1 --nthreads 1"
        )
        command = f"mount -t tmpfs none {cache_dir} && exec {worker_cli} --no-dashboard"
        worker = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            dask_client.wait_for_workers(1, timeout=60)
            expected = f"{cache_dir}: the cache must be on a filesystem every dask worker shares ("
            with pytest.raises(InputError, match=re.escape(expected) + r".*use --cache on a shared folder$"):
                cnncodes.extract(HYMENOPTERA / "val", cache=cache_dir, client=dask_client, progress=False)
        finally:
            worker.terminate()
            worker.wait(timeout=30)


def test_extract_on_cluster_needs_a_cache(client: Client) -> None:
    """Check that a distributed run without a cache is refused before any work."""
    message = "distributed extraction needs a cache folder that every worker shares; cache=False is not possible"
    with pytest.raises(InputError, match="^" + re.escape(message) + "$"):
        cnncodes.extract(HYMENOPTERA / "val", cache=False, client=client)


def test_train_and_sweep_on_dask_backend(client: Client, tmp_path: Path) -> None:
    """Check that train and sweep cross-validate through joblib's dask backend and match the serial results."""
    cache_dir = tmp_path / "cache"
    codes = cnncodes.CNNCodes(cache=str(cache_dir))
    serial = cnncodes.train(HYMENOPTERA / "train", codes=codes, cv=3)
    on_dask = cnncodes.train(HYMENOPTERA / "train", codes=codes, cv=3, client=client)
    assert on_dask.best_params == serial.best_params and on_dask.cv_accuracy == pytest.approx(serial.cv_accuracy)
    swept = cnncodes.sweep(
        HYMENOPTERA / "train", layers=["stage4", "penultimate"], codes=codes, cv=3, baseline=False, client=client
    )
    assert {row.features for row in swept.rows} == {"stage4", "penultimate"}
    shutil.rmtree(cache_dir)


def test_core_works_without_dask() -> None:
    """Check that the core imports and runs without dask installed, and asking for a cluster says what to install."""
    code = (
        "import sys\n"
        "sys.modules['dask'] = None  # as if dask were not installed\n"
        "import cnncodes\n"
        "try:\n"
        "    cnncodes.extract([], client='local:1', cache=True)\n"
        "except ImportError as error:\n"
        "    print(type(error).__name__, isinstance(error, cnncodes.CnnCodesError), error)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("MissingExtraError True running on dask needs dask.distributed (")
    assert completed.stdout.endswith("); install it with: pip install 'cnncodes[dask]'\n")


@pytest.mark.parametrize("address", ["local:0", "local:x", "local:-2"])
def test_local_cluster_size_is_checked_in_one_line(address: str, tmp_path: Path) -> None:
    """Check that local:0 and local:x are one line naming the address (not ZeroDivisionError or ValueError)."""
    from click.testing import CliRunner

    from cnncodes.cli import cli

    expected = f"{address}: the number of dask workers must be a positive integer, as in local:2"
    result = CliRunner().invoke(cli, ["-q", "extract", str(tmp_path), "--dask", address, "--cache", str(tmp_path)])
    assert (result.exit_code, result.stderr) == (1, f"Error: {expected}\n")


def test_unreachable_scheduler_fails_before_extracting(tmp_path: Path) -> None:
    """Check that a scheduler address nothing listens on fails at once in one line, before train extracts codes."""
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: connecting to it is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    expected = f"{address}: cannot reach the dask scheduler (Connection refused)"
    with pytest.raises(cnncodes.CnnCodesError, match=re.escape(expected)):
        cnncodes.train(HYMENOPTERA / "val", client=address, codes=cnncodes.CNNCodes(cache=str(tmp_path / "cache")))
    assert not (tmp_path / "cache").exists()  # nothing was extracted first


def test_killed_worker_is_one_line() -> None:
    """Check that a task that kills every worker it runs on until the scheduler gives up is one line, not a trace."""
    import dask

    from cnncodes.distributed import connect

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            with Client(cluster) as dask_client:
                with pytest.raises(cnncodes.CnnCodesError, match="^dask: a task kept killing its workers and the"):
                    with connect(dask_client) as connected:
                        connected.submit(os._exit, 1, pure=False).result()


def test_partition_size_follows_the_work() -> None:
    """Check the default task size: about four tasks per worker (2,000 images on 2 workers: 8 tasks), capped."""
    from cnncodes.distributed import partition_size_for

    assert partition_size_for(2000, 2) == 250 and partition_size_for(5, 4) == 1 and partition_size_for(10**7, 1) == 2000
    with pytest.raises(InputError, match=re.escape("The 'partition_size' parameter must be a positive int or None.")):
        cnncodes.extract([], client=object(), partition_size=0, cache=False)
