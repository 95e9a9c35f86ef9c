"""The progress line of a run on stderr (tqdm): images done, images/s computed, from cache, failed, ETA."""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["Progress"]

_LINE = "{n_fmt}/{total_fmt} images  {rate_noinv_fmt}  {desc}  ETA {remaining}"
_REFRESH_S = 0.5  # at most twice a second


class Progress:
    """One refreshed line on stderr: ``12/245 images  30.12 images/s  8 from cache  1 failed  ETA 00:07``.

    The rate counts only the images handled after the line opened, so images served from
    the cache (all known before computing starts) do not inflate it.

    Parameters
    ----------
    total : int
        Images in the run.
    show : bool or None, default=None
        True: always draw; False: never (``--quiet``); None: only when stderr is a terminal.
    from_cache : int, default=0
        Images already served from the cache when the line opens.
    failed : int, default=0
        Images already failed when the line opens.

    Examples
    --------
    >>> progress = Progress(3, show=False, from_cache=1)
    >>> progress.update(done=1)
    >>> progress.update(failed=1)
    >>> progress.n_done, progress.n_from_cache, progress.n_failed
    (3, 1, 1)
    >>> progress.close()
    """

    def __init__(self, total: int, *, show: bool | None = None, from_cache: int = 0, failed: int = 0) -> None:
        self.n_done, self.n_from_cache, self.n_failed = from_cache + failed, from_cache, failed
        self._bar = tqdm(
            total=total,
            initial=self.n_done,  # the rate counts only what is done from here on
            file=sys.stderr,
            disable=not (sys.stderr.isatty() if show is None else show),
            unit=" images",
            bar_format=_LINE,
            mininterval=_REFRESH_S,
            smoothing=0,  # the average rate since the start, as a user reads it
            desc=self._counts(),
        )

    def _counts(self) -> str:
        return f"{self.n_from_cache} from cache  {self.n_failed} failed"

    def update(self, done: int = 0, failed: int = 0) -> None:
        """Count images computed (``done``) or failed.

        Parameters
        ----------
        done : int, default=0
            Images computed since the last call.
        failed : int, default=0
            Images failed since the last call.
        """
        self.n_done += done + failed
        if failed:
            self.n_failed += failed
            self._bar.set_description_str(self._counts(), refresh=False)
        self._bar.update(done + failed)

    def close(self) -> None:
        """Draw the final state and end the line."""
        self._bar.close()
