"""TensorRT engine folders: one per model sha256 and batch range, built privately, published by atomic renames."""

from __future__ import annotations

import contextlib
import filecmp
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .paths import models_dir

__all__ = ["EngineFolder", "TIMING_SUFFIX", "STALE_BUILD_S"]

TIMING_SUFFIX = ".timing"  # TensorRT's timing cache files, shared by every model (they key layers, not models)
_BUILD_PREFIX = ".build-"  # private build folders; never read by another process
STALE_BUILD_S = 24 * 3600  # a build folder untouched this long was left by a process that died


@dataclass
class EngineFolder:
    """Where the TensorRT engines of one model live, and how a process adds to them without collisions.

    onnxruntime names an engine file after a hash of the graph's tensor names, the GPU and the
    library versions, not after the weights, so two models with the same names would share
    engines; hence one folder per model sha256 (and per batch range, which the engine's
    optimization profile fixes). onnxruntime writes engine and timing files in place with a
    plain file stream, so processes sharing a folder (dask workers on a network filesystem)
    never let it write there: each builds in a private folder seeded with copies of the
    published files, and after its first successful run moves what is new into place with
    atomic renames. A reader sees either no file or a whole one; two builders of the same
    engine both publish a complete file and the last rename wins.

    Parameters
    ----------
    model_sha256 : str
        Of the serialized model the session runs.
    max_batch : int
        The top of the engine's batch range (see :func:`cnncodes.providers.tensorrt_options`).
    root : Path or None, default=None
        ``models_dir() / "tensorrt"`` when None.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()) / "missing" / "parents"
    >>> folder = EngineFolder("ab" * 32, 64, root)
    >>> build = folder.open_build()  # created with its parents: TensorRT would create only the last level
    >>> _ = (build / "TensorrtExecutionProvider_TRTKernel_graph_1_0_0_sm86.engine").write_bytes(b"engine")
    >>> folder.publish(build)
    ['TensorrtExecutionProvider_TRTKernel_graph_1_0_0_sm86.engine']
    >>> sorted(p.name for p in folder.published.iterdir()), build.exists()
    (['TensorrtExecutionProvider_TRTKernel_graph_1_0_0_sm86.engine'], False)
    >>> folder.published.relative_to(root).as_posix() == "ab" * 32 + "/batch-1-64"
    True
    """

    model_sha256: str
    max_batch: int
    root: Path | None = None
    _seeded: dict[Path, Path] = field(default_factory=dict, repr=False)  # build copy -> published original

    @property
    def base(self) -> Path:
        """The folder of every TensorRT cache: ``models_dir()/tensorrt`` unless ``root`` is given."""
        return (self.root if self.root is not None else models_dir() / "tensorrt").absolute()

    @property
    def published(self) -> Path:
        """Complete engines of this model and batch range, as other processes may read them."""
        return self.base / self.model_sha256 / f"batch-1-{self.max_batch}"

    @property
    def timing_dir(self) -> Path:
        """The timing cache every model shares (TensorRT keys it by layer and GPU)."""
        return self.base / "timing"

    def open_build(self) -> Path:
        """A new private folder, created with its parents, holding copies of the published engines and timing cache.

        Build folders of this model left for more than :data:`STALE_BUILD_S` seconds by
        processes that died are removed on the way.

        Returns
        -------
        Path
            Give it to TensorRT as its engine and timing cache path.
        """
        build = self.published.parent / f"{_BUILD_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        build.mkdir(parents=True)
        for other in build.parent.glob(f"{_BUILD_PREFIX}*"):
            with contextlib.suppress(OSError):  # another process may be removing it too
                if time.time() - other.stat().st_mtime > STALE_BUILD_S:
                    shutil.rmtree(other, ignore_errors=True)
        for source in (*_files(self.published), *(p for p in _files(self.timing_dir) if p.suffix == TIMING_SUFFIX)):
            copy = build / source.name
            # Copies, not links: if TensorRT rewrote a linked file it would change the published one in place.
            shutil.copyfile(source, copy)
            self._seeded[copy] = source
        return build

    def publish(self, build: Path) -> list[str]:
        """Move what the build added or changed into the shared folders atomically; remove the build folder.

        Parameters
        ----------
        build : Path
            From :meth:`open_build`, after the session's first successful run.

        Returns
        -------
        list of str
            Names of the files published.
        """
        published = []
        for path in _files(build):
            original = self._seeded.pop(path, None)
            if original is not None and original.exists() and filecmp.cmp(path, original, shallow=False):
                continue  # unchanged copy of a published file
            target = (self.timing_dir if path.suffix == TIMING_SUFFIX else self.published) / path.name
            _move_atomically(path, target)
            published.append(path.name)
        self.discard(build)
        return sorted(published)

    def discard(self, build: Path) -> None:
        """Remove a build folder and what is in it (after a failed attempt, or once published)."""
        for path in [p for p in self._seeded if p.parent == build]:
            del self._seeded[path]
        shutil.rmtree(build, ignore_errors=True)
        with contextlib.suppress(OSError):  # leave no empty model folder behind a TensorRT that never ran
            build.parent.rmdir()


def _files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file())
    except FileNotFoundError:
        return []


def _move_atomically(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` (same filesystem); across filesystems copy beside ``target``, then rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:  # EXDEV: the timing folder is a mount of its own
        temporary = target.with_name(f"{_BUILD_PREFIX}{uuid.uuid4().hex[:8]}-{target.name}")
        shutil.copyfile(source, temporary)
        os.replace(temporary, target)
        with contextlib.suppress(OSError):
            source.unlink()
