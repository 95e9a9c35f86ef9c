"""The only dask importer: extraction on a dask.distributed cluster, and joblib's dask backend for model selection.

The client keys every input and filters cache hits, then sends the misses in tasks of
``partition_size`` images. Each worker process keeps one Extractor (one ONNX Runtime
session) alive across tasks and writes its shards straight into the shared cache; the
client then reads every code back from the cache. A task that dies with its worker is
rerun elsewhere by dask; shards are atomic and duplicate keys harmless, so the result
holds every image exactly once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .cache import CodeCache
from .errors import CnnCodesError, ImageDecodeError, InputError
from .engine import ExtractionOptions, ExtractionPlan, Extractor

if TYPE_CHECKING:
    from dask.distributed import Client

__all__ = ["DEFAULT_PARTITION_SIZE", "connect", "extract_on_cluster", "check_shared_cache", "dask_backend"]

DEFAULT_PARTITION_SIZE = 2000
_LOCAL_PREFIX = "local:"
_worker_extractors: dict[tuple[Any, ...], Extractor] = {}  # per worker process: one session per configuration
_worker_lock = threading.Lock()  # a worker's tasks take turns: the session already uses all its threads


def _distributed() -> Any:
    """dask.distributed, imported on first use: it is the optional ``dask`` extra."""
    try:
        import dask.distributed
    except ImportError as error:
        message = f"running on dask needs dask.distributed ({error}); install it with: pip install 'cnncodes[dask]'"
        raise CnnCodesError(message) from error
    return dask.distributed


@contextlib.contextmanager
def connect(client: "Client | str") -> Iterator["Client"]:
    """A dask client: an existing one, ``"local:N"`` (a LocalCluster of N worker processes), or a scheduler address."""
    if not isinstance(client, str):
        yield client
        return
    distributed = _distributed()
    Client, LocalCluster = distributed.Client, distributed.LocalCluster  # noqa: N806 (dask's class names)
    if client.startswith(_LOCAL_PREFIX):
        n_workers = int(client[len(_LOCAL_PREFIX) :] or os.cpu_count() or 1)
        threads = max(1, (os.cpu_count() or 1) // n_workers)
        with LocalCluster(
            n_workers=n_workers, threads_per_worker=threads, processes=True, dashboard_address=":0"
        ) as cluster:
            with Client(cluster) as local_client:
                yield local_client
        return
    try:
        with Client(client, timeout="30s") as remote:
            yield remote
    except OSError as error:
        message = f"{client}: cannot reach the dask scheduler ({error})"
        raise CnnCodesError(message) from error


def _probe_cache(root: str, token: str) -> str:
    """On a worker: read the client's token from the cache folder and leave a token of its own."""
    probe = Path(root) / ".probe"
    try:
        if (probe / token).read_text() != token:
            return "sees another cache folder (the client's probe differs)"
        (probe / f"{token}.{uuid.uuid4().hex}").write_text(token)
    except OSError as error:
        return f"cannot read and write it ({error.strerror or error})"
    return ""


def check_shared_cache(client: "Client", root: Path) -> None:
    """Refuse, in one line, a cache folder that some worker cannot read and write.

    Raises
    ------
    InputError
        Naming the cache folder and the workers that do not see it.
    """
    token = uuid.uuid4().hex
    probe = root / ".probe"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / token).write_text(token)
    try:
        answers = client.run(_probe_cache, str(root), token)
        seen = {p.name for p in probe.glob(f"{token}.*")}
    finally:
        for path in probe.glob(f"{token}*"):
            path.unlink(missing_ok=True)
    problems = {worker: why for worker, why in answers.items() if why}
    if not problems and len(seen) < len(answers):
        problems = {"some workers": "wrote tokens the client cannot see"}
    if problems:
        detail = "; ".join(f"{worker} {why}" for worker, why in sorted(problems.items()))
        message = f"{root}: the cache must be on a filesystem every dask worker shares ({detail}); use --cache on a shared folder"
        raise InputError(message)


def _run_task(
    options: ExtractionOptions, cache_root: str, settings: dict[str, Any], sources: list[Any]
) -> list[tuple[int, str]]:
    """On a worker: extract ``sources`` into the shared cache; return (position, reason) of the failures."""
    key = (options, cache_root, tuple(sorted(settings.items())))
    with _worker_lock:
        extractor = _worker_extractors.get(key)
        if extractor is None:
            extractor = Extractor(options, cache=CodeCache(cache_root), progress=False, on_error="skip", **settings)
            _worker_extractors[key] = extractor
        result = extractor.run(sources)
    failed = set(range(len(sources))) - set(result.indices.tolist())
    reasons = dict(zip(sorted(failed), (reason for _, reason in result.failures)))
    return sorted(reasons.items())


def extract_on_cluster(
    extractor: Extractor,
    inputs: Any,
    client: "Client",
    *,
    partition_size: int = DEFAULT_PARTITION_SIZE,
) -> ExtractionPlan:
    """Run ``extractor``'s plan for ``inputs`` on a dask cluster; return the completed plan.

    Parameters
    ----------
    extractor : Extractor
        Its cache must be a folder every worker shares (checked first).
    inputs : any form :func:`cnncodes.extract` accepts
    client : dask.distributed.Client
    partition_size : int, default=2000
        Images per task.

    Raises
    ------
    InputError
        If the extractor has no cache, or the cache is not shared with every worker.
    """
    if extractor.cache is None:
        message = "distributed extraction needs a cache folder that every worker shares; cache=False is not possible"
        raise InputError(message)
    root = extractor.cache.root.resolve()
    check_shared_cache(client, root)
    plan = extractor.plan(inputs)
    if not plan.todo:
        return plan
    threads = client.nthreads()  # the cores each worker was given: its onnxruntime and decode threads
    n_threads = min(threads.values()) if threads else None
    settings = {
        "batch_size": extractor.batch_size,
        "device": extractor.device,
        "n_threads": extractor.n_threads or n_threads,
        "optimization": extractor.optimization,
        "n_workers": n_threads,
    }
    resources = {"GPU": 1} if extractor.device in ("cuda", "tensorrt") and _has_gpu_resources(client) else None
    partitions = [plan.todo[i : i + partition_size] for i in range(0, len(plan.todo), partition_size)]
    futures = {
        client.submit(
            _run_task,
            extractor.options,
            str(root),
            settings,
            [plan.items[i].source for i in part],
            pure=False,
            retries=2,
            resources=resources,
        ): part
        for part in partitions
    }
    for future in _distributed().as_completed(futures):
        part = futures[future]
        failed = dict(future.result())
        for position, reason in failed.items():
            plan.fail(part[position], ImageDecodeError(f"{plan.items[part[position]].name}: {reason}"))
        plan.progress.update(done=len(part) - len(failed))
    done = [i for i in plan.todo if i not in plan.failures]
    keys = [plan.items[i].key or "" for i in done]
    for fs, block in zip(plan.feature_sets, plan.codes):
        fs.refresh()
        if done:
            block[done] = fs.get(keys)
    plan.ok[done] = True
    return plan


def _has_gpu_resources(client: "Client") -> bool:
    workers = client.scheduler_info().get("workers", {}).values()
    return any(worker.get("resources", {}).get("GPU") for worker in workers)


@contextlib.contextmanager
def dask_backend(client: "Client | str | None") -> Iterator[int | None]:
    """Run joblib-parallel work (cross-validation, grid search) on dask; yields the ``n_jobs`` to use."""
    if client is None:
        yield None
        return
    import joblib

    with connect(client) as connected, joblib.parallel_config(backend="dask"):
        del connected  # the backend finds the current client itself
        yield -1
