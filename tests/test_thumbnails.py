"""Tests of the report thumbnails: real photos made small, numbered names, unreadable images left out."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cnncodes.thumbnails import write_thumbnails
from tests.conftest import HYMENOPTERA, write_image


def test_write_thumbnails_of_real_photos(tmp_path: Path) -> None:
    """Check that each readable image gets a numbered JPEG of at most 140 px, aspect kept, and a bad one None."""
    photos = sorted((HYMENOPTERA / "val" / "bees").glob("*.jpg"))[:2]
    hostile = write_image(tmp_path / "in" / '<a href="x">.png', seed=1, size=(300, 100))
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    sources = [str(photos[0]), str(tmp_path / "in" / "empty.jpg"), str(hostile), str(photos[1])]
    urls = write_thumbnails(sources, tmp_path / "report", size=140)
    assert urls == ["thumbnails/0001.jpg", None, "thumbnails/0003.jpg", "thumbnails/0004.jpg"]
    assert sorted(p.name for p in (tmp_path / "report" / "thumbnails").iterdir()) == [
        "0001.jpg",
        "0003.jpg",
        "0004.jpg",
    ]
    for source, url in zip(sources, urls):
        if url is None:
            continue
        with Image.open(source) as original, Image.open(tmp_path / "report" / url) as small:
            assert small.format == "JPEG" and max(small.size) == 140
            assert abs(small.width / small.height - original.width / original.height) < 0.05
