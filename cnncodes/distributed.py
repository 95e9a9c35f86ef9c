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
from .engine import ExtractionOptions, ExtractionPlan, Extractor, RunSettings
from .errors import CnnCodesError, InputError
from .extras import import_extra

if TYPE_CHECKING:
    from dask.distributed import Client

__all__ = ["DEFAULT_PARTITION_SIZE", "connect", "extract_on_cluster", "dask_backend"]

DEFAULT_PARTITION_SIZE = 2000
_LOCAL_PREFIX = "local:"
_worker_extractors: dict[tuple[Any, ...], Extractor] = {}  # per worker process: one session per configuration
_worker_lock = threading.Lock()  # a worker's tasks take turns: the session already uses all its threads


def _distributed() -> Any:
    """dask.distributed, imported on first use: it is the optional ``dask`` extra."""
    return import_extra("dask.distributed", "dask", "running on dask")


@contextlib.contextmanager
def connect(client: "Client | str") -> Iterator["Client"]:
    """A connected dask client, closed at the end when this function opened it.

    Parameters
    ----------
    client : dask.distributed.Client or str
        An existing client (used as is), ``"local:N"`` (a LocalCluster of N worker
        processes, N = every core when omitted), or a scheduler address.

    Yields
    ------
    dask.distributed.Client

    Raises
    ------
    MissingExtraError
        If dask is not installed (extra ``dask``).
    CnnCodesError
        If the scheduler cannot be reached.

    Examples
    --------
    >>> existing = object()  # stands for a Client the caller made
    >>> with connect(existing) as client:
    ...     client is existing
    True
    """
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


def _check_shared_cache(client: "Client", root: Path) -> None:
    """Refuse, in one line, a cache folder that some worker cannot read and write."""
    token = uuid.uuid4().hex
    probe = root / ".probe"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / token).write_text(token)  # a probe, not data: nothing reads it half-written
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
        message = (
            f"{root}: the cache must be on a filesystem every dask worker shares ({detail}); "
            "use --cache on a shared folder"
        )
        raise InputError(message)


def _run_task(options: ExtractionOptions, cache_root: str, settings: RunSettings, sources: list[Any]) -> dict[int, str]:
    """On a worker: extract ``sources`` into the shared cache; return the reasons of the failures by position."""
    key = (options, cache_root, tuple(sorted(settings.items())))
    with _worker_lock:
        extractor = _worker_extractors.get(key)
        if extractor is None:
            extractor = Extractor(options, cache=CodeCache(cache_root), progress=False, on_error="skip", **settings)
            _worker_extractors[key] = extractor
        result = extractor.run(sources)
    failed = sorted(set(range(len(sources))) - set(result.indices.tolist()))
    return dict(zip(failed, (reason for _, reason in result.failures)))


def extract_on_cluster(
    extractor: Extractor,
    inputs: Any,
    client: "Client",
    *,
    partition_size: int = DEFAULT_PARTITION_SIZE,
) -> ExtractionPlan:
    """Run ``extractor``'s plan for ``inputs`` on a dask cluster; return the completed plan.

    The client keys the inputs and reads the cache hits; workers compute the rest in tasks of
    ``partition_size`` images and write shards into the shared cache, from which the client
    then reads every code.

    Parameters
    ----------
    extractor : Extractor
        Its cache must be a folder every worker shares (checked first).
    inputs : object
        Any form :func:`cnncodes.extract` accepts.
    client : dask.distributed.Client
        A connected client (see :func:`connect`).
    partition_size : int, default=2000
        Images per task.

    Returns
    -------
    ExtractionPlan
        Completed: pass it to :meth:`Extractor.finish`.

    Raises
    ------
    InputError
        If the extractor has no cache, or the cache is not shared with every worker.

    Examples
    --------
    >>> from cnncodes.engine import ExtractionOptions, Extractor
    >>> extract_on_cluster(Extractor(ExtractionOptions(), cache=False), [], client=None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: distributed extraction needs a cache folder that every worker shares; ...
    """
    if extractor.cache is None:
        message = "distributed extraction needs a cache folder that every worker shares; cache=False is not possible"
        raise InputError(message)
    root = extractor.cache.root.resolve()
    _check_shared_cache(client, root)
    plan = extractor.plan(inputs)
    if not plan.todo:
        return plan
    threads = client.nthreads()  # the cores each worker was given: its onnxruntime and decode threads
    n_threads = min(threads.values()) if threads else None
    settings: RunSettings = {
        "batch_size": extractor.batch_size,
        "device": extractor.device,
        "n_threads": extractor.n_threads or n_threads,
        "optimization": extractor.optimization,
        "n_workers": n_threads,
    }
    resources = {"GPU": 1} if extractor.device in ("cuda", "tensorrt") and _has_gpu_resources(client) else None
    futures = {
        client.submit(
            _run_task,
            extractor.options,
            str(root),
            settings,
            plan.sources(part),
            pure=False,
            retries=2,
            resources=resources,
        ): part
        for part in plan.partitions(partition_size)
    }
    for future in _distributed().as_completed(futures):
        part = futures[future]
        failed = future.result()
        for position, reason in failed.items():
            plan.fail_with(part[position], reason)
        plan.count_computed(len(part) - len(failed))
    plan.read_back([i for i in plan.todo if i not in plan.failures])
    return plan


def _has_gpu_resources(client: "Client") -> bool:
    workers = client.scheduler_info().get("workers", {}).values()
    return any(worker.get("resources", {}).get("GPU") for worker in workers)


@contextlib.contextmanager
def dask_backend(client: "Client | str | None") -> Iterator[int | None]:
    """Run joblib-parallel work (cross-validation, grid search) on dask.

    Parameters
    ----------
    client : dask.distributed.Client, str or None
        As :func:`connect` takes it; None runs locally.

    Yields
    ------
    int or None
        The ``n_jobs`` to use: -1 on dask (every worker), None locally.

    Examples
    --------
    >>> with dask_backend(None) as n_jobs:
    ...     print(n_jobs)
    None
    """
    if client is None:
        yield None
        return
    import joblib

    with connect(client) as connected, joblib.parallel_config(backend="dask"):
        del connected  # the backend finds the current client itself
        yield -1
