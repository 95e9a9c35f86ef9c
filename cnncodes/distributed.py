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
import math
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .cache import CodeCache
from .engine import ExtractionOptions, ExtractionPlan, Extractor, RunSettings
from .errors import CnnCodesError, InputError
from .extras import import_extra
from .params import check_parameter

if TYPE_CHECKING:
    from dask.distributed import Client

__all__ = [
    "DEFAULT_PARTITION_SIZE",
    "connect",
    "check_cluster",
    "partition_size_for",
    "extract_on_cluster",
    "dask_backend",
]

DEFAULT_PARTITION_SIZE = None  # None: partition_size_for() sizes the tasks from the work and the cluster
MAX_PARTITION_SIZE = 2000  # images per task at most: a task lost with its worker loses no more than this
_TASKS_PER_WORKER = 4  # several tasks per worker keep every worker busy while the last ones finish
_CONNECT_TIMEOUT_S = 5
_DEFAULT_SCHEDULER_PORT = 8786
_RETRIES = 2  # a task is rerun elsewhere this many times after its worker died
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
    InputError
        If ``"local:N"`` does not name a positive N.
    CnnCodesError
        If the scheduler cannot be reached, or a task killed its workers until the
        scheduler gave up (dask's KilledWorker).

    Examples
    --------
    >>> existing = object()  # stands for a Client the caller made
    >>> with connect(existing) as client:
    ...     client is existing
    True
    """
    if not isinstance(client, str):
        with _one_line_failures():
            yield client
        return
    n_local = check_cluster(client)
    distributed = _distributed()
    Client, LocalCluster = distributed.Client, distributed.LocalCluster  # noqa: N806 (dask's class names)
    if n_local is not None:
        threads = max(1, (os.cpu_count() or 1) // n_local)
        with LocalCluster(
            n_workers=n_local, threads_per_worker=threads, processes=True, dashboard_address=":0"
        ) as cluster:
            with Client(cluster) as local_client, _one_line_failures():
                yield local_client
        return
    try:
        remote = Client(client, timeout=f"{_CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as error:
        message = f"{client}: cannot reach the dask scheduler ({error})"
        raise CnnCodesError(message) from error
    with remote, _one_line_failures():
        yield remote


def check_cluster(client: "Client | str | None") -> int | None:
    """Check a ``client`` argument at once: ``local:N`` must name a positive N, an address must accept connections.

    Parameters
    ----------
    client : dask.distributed.Client, str or None
        As :func:`connect` takes it.

    Returns
    -------
    int or None
        N of ``local:N`` (every core when omitted); None for a Client, an address or None.

    Raises
    ------
    InputError
        If N is not a positive integer.
    CnnCodesError
        If nothing listens at the scheduler address (a refused connection fails at
        once, an unanswered one after a few seconds).

    Examples
    --------
    >>> check_cluster("local:2"), check_cluster(None)
    (2, None)
    >>> check_cluster("local:0")
    Traceback (most recent call last):
    ...
    cnncodes.errors.InputError: local:0: the number of dask workers must be a positive integer, as in local:2
    """
    if not isinstance(client, str):
        return None
    if client.startswith(_LOCAL_PREFIX):
        count = client[len(_LOCAL_PREFIX) :]
        if not count:
            return os.cpu_count() or 1
        if not (count.isdigit() and int(count) >= 1):
            message = f"{client}: the number of dask workers must be a positive integer, as in local:2"
            raise InputError(message)
        return int(count)
    host, port = _host_port(client)
    try:
        socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        message = f"{client}: cannot reach the dask scheduler ({error.strerror or error})"
        raise CnnCodesError(message) from error
    return None


def _host_port(address: str) -> tuple[str, int]:
    """``tcp://host:8786``, ``host:8786`` or ``host`` (dask's default port) -> (host, port)."""
    location = address.split("://", 1)[-1].rstrip("/")
    host, separator, port = location.rpartition(":")
    if not separator or not port.isdigit():
        return location.strip("[]"), _DEFAULT_SCHEDULER_PORT
    return host.strip("[]"), int(port)


@contextlib.contextmanager
def _one_line_failures() -> Iterator[None]:
    """dask's KilledWorker (a task that killed every worker it ran on) as one line; the cache keeps what was written."""
    killed = _distributed().KilledWorker
    try:
        yield
    except killed as error:
        reason = error.args[0] if error.args else error
        message = (
            f"dask: a task kept killing its workers and the scheduler gave up (KilledWorker: {reason}); "
            "the codes computed so far are in the cache: rerun to go on, with more memory per worker"
        )
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
    partition_size: int | None = DEFAULT_PARTITION_SIZE,
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
    partition_size : int or None, default=None
        Images per task; None: :func:`partition_size_for` the images to compute.

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
    check_parameter("partition_size", partition_size)
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
            retries=_RETRIES,
            resources=resources,
        ): part
        for part in plan.partitions(partition_size or partition_size_for(len(plan.todo), len(threads)))
    }
    for future in _distributed().as_completed(futures):
        part = futures[future]
        failed = future.result()
        for position, reason in failed.items():
            plan.fail_with(part[position], reason)
        plan.count_computed(len(part) - len(failed))
    plan.read_back([i for i in plan.todo if i not in plan.failures])
    return plan


def partition_size_for(n_images: int, n_workers: int) -> int:
    """Images per task: about four tasks per worker, at most :data:`MAX_PARTITION_SIZE`.

    One task of 2,000 images keeps one worker busy while the others wait (slower than
    serial); four per worker balance the load and keep the per-task overhead small.

    Examples
    --------
    >>> partition_size_for(2000, 2), partition_size_for(10, 2), partition_size_for(10**6, 2)
    (250, 2, 2000)
    """
    per_task = math.ceil(n_images / (max(n_workers, 1) * _TASKS_PER_WORKER))
    return max(1, min(MAX_PARTITION_SIZE, per_task))


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
