"""HTML building blocks of the report pages: escaping, tables, thumbnails, the page shell (standard library only)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable, Sequence

from .fileio import write_text_atomic

__all__ = ["Markup", "escape", "table", "section", "cards", "thumbnail", "gallery", "page", "write_page"]

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f4f6f9}
main{max-width:1180px;margin:0 auto;padding:20px 28px 48px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:19px;margin:30px 0 10px;padding-top:6px;border-top:1px solid #d8dde6}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#5b6575;margin:0 0 14px}
nav a{margin-right:14px}a{color:#1f5fbf;text-decoration:none}a:hover{text-decoration:underline}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{background:#fff;border:1px solid #d8dde6;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px}.card span{color:#5b6575;font-size:13px}
table{border-collapse:collapse;background:#fff;margin:6px 0 10px}
th,td{border:1px solid #d8dde6;padding:4px 9px;text-align:right;font-variant-numeric:tabular-nums}
th{background:#eef1f6}td.name,th.name{text-align:left}tr.best td{background:#e3f4e6;font-weight:600}
tr.baseline td{color:#5b6575;font-style:italic}
td.hit{background:#dcebfb}td.miss{background:#fde3e1}td.zero{color:#9aa3b1}
.note{background:#fff8dc;border:1px solid #ecd98b;border-radius:6px;padding:8px 12px}
.rec{background:#e3f4e6;border:1px solid #9fd3a9;border-radius:6px;padding:10px 14px;font-size:16px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.cells{display:flex;flex-wrap:wrap;gap:0 30px;align-items:flex-start}
figure.thumb{margin:0;width:150px;background:#fff;border:1px solid #d8dde6;border-radius:6px;padding:5px}
figure.thumb img{display:block;max-width:140px;max-height:140px;margin:0 auto}
figure.thumb .none{height:90px;display:flex;align-items:center;justify-content:center;color:#9aa3b1}
figcaption{font-size:12px;line-height:1.3;overflow-wrap:anywhere;margin-top:4px}
figcaption .path{color:#5b6575}.wrong{color:#b3261e;font-weight:600}
.bar{display:inline-block;height:9px;background:#3b7dd8;border-radius:2px;vertical-align:middle;margin-right:6px}
img.plot{background:#fff;border:1px solid #d8dde6;border-radius:6px;max-width:100%;height:auto}
ul.failures{font-size:13px}code{font-size:13px}
"""


_NAME_CLASS = ' class="name"'


class Markup(str):
    """Text that is already HTML: :func:`escape` passes it through unchanged.

    Examples
    --------
    >>> escape(Markup("<b>1</b>")), escape("<b>1</b>")
    ('<b>1</b>', '&lt;b&gt;1&lt;/b&gt;')
    """


def escape(value: Any) -> Markup:
    """``value`` as HTML text: :class:`Markup` unchanged, anything else through :func:`html.escape` (quotes too).

    Parameters
    ----------
    value : object
        Text, a number, or Markup.

    Returns
    -------
    Markup

    Examples
    --------
    >>> escape('ants/"a&b".jpg')
    'ants/&quot;a&amp;b&quot;.jpg'
    """
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


def table(
    headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, row_classes: Sequence[str] | None = None, names: int = 1
) -> Markup:
    """An HTML table; cells are escaped unless Markup; the first ``names`` columns align left.

    Parameters
    ----------
    headers : sequence
        Column headings.
    rows : iterable of sequences
        The cells; None shows as an empty cell.
    row_classes : sequence of str or None, default=None
        A CSS class per row ("best", "baseline" or "").
    names : int, default=1
        How many leading columns hold names rather than figures.

    Returns
    -------
    Markup

    Examples
    --------
    >>> print(table(["class", "n"], [["<ants>", 3]]))
    <table><tr><th class="name">class</th><th>n</th></tr>
    <tr><td class="name">&lt;ants&gt;</td><td>3</td></tr></table>
    """

    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(
            f"<{tag}{_NAME_CLASS if i < names else ''}>{escape('' if v is None else v)}</{tag}>"
            for i, v in enumerate(values)
        )

    lines = [f"<table><tr>{cells('th', headers)}</tr>"]
    for i, row in enumerate(rows):
        css = row_classes[i] if row_classes is not None and row_classes[i] else ""
        ident = f' class="{css}"' if css else ""
        lines.append(f"<tr{ident}>{cells('td', row)}</tr>")
    return Markup("\n".join(lines) + "</table>")


def section(title: str, body: str, anchor: str | None = None) -> Markup:
    """A titled part of a page, with an anchor to link to.

    Examples
    --------
    >>> section("Map", Markup("<p>x</p>"), "map")
    '<section id="map"><h2>Map</h2>\\n<p>x</p></section>'
    """
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return Markup(f"<section{ident}><h2>{escape(title)}</h2>\n{body}</section>")


def cards(figures: Sequence[tuple[str, Any]]) -> Markup:
    """Headline figures as a row of cards: (label, value); floats show with 4 decimals.

    Examples
    --------
    >>> cards([("accuracy", 0.5)])
    '<div class="cards"><div class="card"><b>0.5000</b><span>accuracy</span></div></div>'
    """
    items = "".join(
        f'<div class="card"><b>{escape(f"{v:.4f}" if isinstance(v, float) else v)}</b><span>{escape(k)}</span></div>'
        for k, v in figures
    )
    return Markup(f'<div class="cards">{items}</div>')


def thumbnail(src: str | None, caption: str, alt: str, anchor: str | None = None) -> Markup:
    """One captioned image; without ``src`` (the file could not be read) a placeholder, never a broken image.

    Parameters
    ----------
    src : str or None
        Relative URL of the thumbnail file.
    caption : str
        HTML (Markup) or text under the image.
    alt : str
        The image's alternative text, e.g. its path.
    anchor : str or None, default=None
        An id to link to.

    Returns
    -------
    Markup

    Examples
    --------
    >>> thumbnail(None, "a.jpg", "a.jpg")
    '<figure class="thumb"><div class="none">no image</div><figcaption>a.jpg</figcaption></figure>'
    """
    ident = f' id="{escape(anchor)}"' if anchor else ""
    picture = (
        f'<img src="{escape(src)}" alt="{escape(alt)}" title="{escape(alt)}" loading="eager">'
        if src
        else '<div class="none">no image</div>'
    )
    return Markup(f'<figure class="thumb"{ident}>{picture}<figcaption>{escape(caption)}</figcaption></figure>')


def gallery(items: Sequence[str], n_hidden: int = 0, what: str = "images") -> Markup:
    """Thumbnails in a wrapping row, and how many of them are not shown.

    Examples
    --------
    >>> gallery([], 3)
    '<div class="gallery"></div><p class="note">3 more images not shown.</p>'
    """
    hidden = f'<p class="note">{n_hidden} more {escape(what)} not shown.</p>' if n_hidden else ""
    return Markup(f'<div class="gallery">{"".join(items)}</div>{hidden}')


def page(title: str, subtitle: str, parts: Sequence[tuple[str, str, str]]) -> str:
    """A whole self-contained document: inline CSS, a table of contents, then each part.

    Parameters
    ----------
    title : str
        The page heading and ``<title>``.
    subtitle : str
        One line under it (text).
    parts : sequence of (anchor, title, body)
        The sections, in order; ``body`` is HTML.

    Returns
    -------
    str

    Examples
    --------
    >>> text = page("Report <1>", "on 3 images", [("map", "Map", Markup("<p>x</p>"))])
    >>> text.startswith("<!DOCTYPE html>"), "<title>Report &lt;1&gt;</title>" in text, 'href="#map"' in text
    (True, True, True)
    """
    contents = " ".join(f'<a href="#{escape(anchor)}">{escape(name)}</a>' for anchor, name, _ in parts)
    sections = "\n".join(section(name, body, anchor) for anchor, name, body in parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body><main>"
        f'<h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p><nav>{contents}</nav>\n'
        f"{sections}\n</main></body></html>\n"
    )


def write_page(text: str, path: Path | str) -> Path:
    """Write a page atomically.

    Examples
    --------
    >>> import shutil, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_page(page("t", "", []), folder / "index.html").read_text()[:15]
    '<!DOCTYPE html>'
    >>> shutil.rmtree(folder)
    """
    return write_text_atomic(path, text)
