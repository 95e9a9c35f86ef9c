"""Tests of the HTML building blocks: every user string escaped, tables, thumbnails, galleries, the page shell."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from cnncodes.htmlreport import Markup, cards, escape, gallery, page, table, thumbnail, write_page

HOSTILE = "<script>alert(\"x\")</script> & 'q'.jpg"
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;q&#x27;.jpg"


class _Tags(HTMLParser):
    """The start tags of a document, to check that user text adds none."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def _tags(text: str) -> list[str]:
    parser = _Tags()
    parser.feed(text)
    return parser.tags


@pytest.mark.parametrize(
    "build",
    [
        lambda s: table([s], [[s, s]]),
        lambda s: cards([(s, s)]),
        lambda s: thumbnail("thumbnails/0001.jpg", s, s, anchor=s),
        lambda s: gallery([thumbnail(None, s, s)], 2, what=s),
        lambda s: page(s, s, [(s, s, escape(s))]),
    ],
    ids=["table", "cards", "thumbnail", "gallery", "page"],
)
def test_user_text_is_escaped_everywhere(build) -> None:
    """Check that a hostile file name shows as text in every building block and adds no tag."""
    text = build(HOSTILE)
    assert HOSTILE not in text and ESCAPED in text and "script" not in _tags(text)


def test_escape_passes_markup_through() -> None:
    """Check that Markup stays as it is, and that numbers and None-free values become text."""
    assert escape(Markup("<b>x</b>")) == "<b>x</b>" and escape(3) == "3" and escape('a"b') == "a&quot;b"


def test_table_row_classes_and_name_columns() -> None:
    """Check the row classes (best, baseline) and that only the leading name columns align left."""
    text = table(
        ["model", "features", "score"], [["a", "b", 0.9], ["-", "raw", 0.5]], row_classes=["best", "baseline"], names=2
    )
    assert text.splitlines()[1] == ('<tr class="best"><td class="name">a</td><td class="name">b</td><td>0.9</td></tr>')
    assert '<tr class="baseline">' in text and text.count('class="name"') == 6


def test_thumbnail_without_a_file_is_a_placeholder_not_a_broken_image() -> None:
    """Check that an image that could not be read draws a placeholder, and a readable one an eager <img>."""
    assert "<img" not in thumbnail(None, "a.jpg", "a.jpg") and "no image" in thumbnail(None, "a.jpg", "a.jpg")
    shown = thumbnail("thumbnails/0002.jpg", Markup("<b>bees</b>"), "x/a.jpg", anchor="img-2")
    assert shown.startswith('<figure class="thumb" id="img-2"><img src="thumbnails/0002.jpg" alt="x/a.jpg"')
    assert 'loading="eager"' in shown and "<figcaption><b>bees</b></figcaption>" in shown


def test_gallery_says_how_many_are_not_shown() -> None:
    """Check that a capped gallery names the number of hidden images, and an uncapped one says nothing."""
    assert gallery(["<i></i>"] * 2, 0) == '<div class="gallery"><i></i><i></i></div>'
    assert gallery([], 7, "mistakes").endswith('<p class="note">7 more mistakes not shown.</p>')


def test_page_is_self_contained(tmp_path: Path) -> None:
    """Check that a page carries its CSS inline, links each part from the contents, and loads nothing remote."""
    text = write_page(
        page("Report", "3 images", [("a", "First", Markup("<p>1</p>")), ("b", "Second", "")]), tmp_path / "index.html"
    ).read_text()
    assert text.startswith("<!DOCTYPE html>") and "<style>" in text and '<meta charset="utf-8">' in text
    assert '<a href="#a">First</a> <a href="#b">Second</a>' in text and '<section id="b"><h2>Second</h2>' in text
    assert "http" not in text.replace("http-equiv", "") and "<link" not in text and "<script" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["index.html"]
