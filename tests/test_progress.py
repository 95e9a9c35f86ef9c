"""Tests of the progress line: what reaches the real stderr, on a terminal, forced, or quiet."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import sys
import termios

import pytest

from cnncodes.progress import Progress

FINAL = re.compile(r"\r4/4 images +[0-9.]+ images/s  1 from cache  1 failed  ETA 00:00\n")


def _run(**options: object) -> None:
    progress = Progress(4, from_cache=1, **options)
    progress.update(done=2)
    progress.update(failed=1)
    progress.close()


def test_progress_forced_on_writes_one_refreshed_line(capfd: pytest.CaptureFixture[str]) -> None:
    """Check that show=True draws on stderr (not a terminal here): redrawn in place, ending with counts and newline."""
    _run(show=True)
    out, err = capfd.readouterr()
    assert out == "" and err.startswith("\r1/4 images  ? images/s  1 from cache  0 failed  ETA ?")
    assert FINAL.search(err) and err.count("\n") == 1


@pytest.mark.parametrize("show", [None, False], ids=["not-a-terminal", "quiet"])
def test_progress_silent_off_terminal_and_when_quiet(capfd: pytest.CaptureFixture[str], show: bool | None) -> None:
    """Check that nothing is written when stderr is not a terminal (show=None) or with show=False."""
    _run(show=show)
    assert capfd.readouterr() == ("", "")


def _read_all(leader: int) -> str:
    """Everything the terminal holds: a pseudo-terminal hands it over in pieces, so read until a pause."""
    chunks = []
    while select.select([leader], [], [], 0.5)[0]:
        chunks.append(os.read(leader, 4096))
    return b"".join(chunks).decode()


def test_progress_shown_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check that show=None draws when stderr is a terminal (a real pseudo-terminal), and show=False still does not."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a 120-column terminal
    with open(follower, "w", encoding="utf-8", closefd=True) as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        _run(show=False)
        _run(show=None)
        terminal.flush()
        written = _read_all(leader)
    os.close(leader)
    assert written.startswith("\r1/4 images")  # nothing from the quiet run before it
    assert FINAL.search(written.replace("\r\n", "\n"))  # the terminal turns the newline into CR LF


def test_progress_counts_without_display() -> None:
    """Check that the counts are kept when nothing is drawn (the result's numbers do not depend on the display)."""
    progress = Progress(5, show=False, from_cache=2, failed=1)
    progress.update(done=1)
    progress.update(failed=1)
    assert (progress.n_done, progress.n_from_cache, progress.n_failed) == (5, 2, 2)
