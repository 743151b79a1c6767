"""Building blocks of the self-contained HTML pages: sections, tables, embedded PNGs.

Every page is one file: images are base64 PNG data URIs, the stylesheet
(``resources/report_style.css``) and any script are inline, fonts are the system's, and a
Content-Security-Policy meta tag forbids loading anything else, so a page opens from disk,
offline, exactly as it was written. Text from files (case ids, paths, sentences) is always
escaped.
"""

from __future__ import annotations

import base64
import html
import math
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from gliomaseg import __version__
from gliomaseg.io.atomic import write_bytes_atomic, write_text_atomic

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@lru_cache(maxsize=8)
def resource_text(name: str) -> str:
    """Text of a packaged resource file (``report_style.css``, ``report_page.html``...)."""
    return (RESOURCES / name).read_text(encoding="utf-8")


def esc(value: Any) -> str:
    """HTML-escaped text of any value (quotes included, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes.

    Raises:
        ValueError: the bytes are not a PNG (no PNG signature).
    """
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG image (missing the PNG signature)")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass
class Figure:
    """One embedded figure: PNG bytes, a file stem for ``--figures``, alt text and caption."""

    name: str
    png: bytes
    alt: str
    caption: str = ""

    def html(self) -> str:
        caption = f"<figcaption>{esc(self.caption)}</figcaption>" if self.caption else ""
        return (
            f'<figure id="fig-{esc(self.name)}"><img src="{png_data_uri(self.png)}" '
            f'alt="{esc(self.alt)}">{caption}</figure>'
        )


@dataclass
class Section:
    """One ``<section>`` of a page; ``omitted`` holds the reason when its inputs are missing."""

    key: str
    title: str
    body: str = ""
    figures: list[Figure] = field(default_factory=list)
    omitted: str | None = None

    def html(self) -> str:
        if self.omitted is not None:
            inner = f'<p class="omitted">Section omitted: {esc(self.omitted)}</p>'
        else:
            inner = self.body
        return (
            f'<section id="{esc(self.key)}" data-section="{esc(self.key)}"'
            f"{' data-omitted' if self.omitted is not None else ''}>"
            f"<h2>{esc(self.title)}</h2>{inner}</section>"
        )


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: numbers rounded, None/NaN as an en dash, lists joined."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return (
            f"{value:.{digits}f}" if abs(value) >= 10 ** (-digits) or value == 0 else f"{value:.2e}"
        )
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[bool] | None = None,
    css_class: str = "",
    raw: bool = False,
    digits: int = 3,
) -> str:
    """An HTML table; cells are escaped unless ``raw`` (cells already HTML).

    Args:
        headers: Column titles.
        rows: Cell values (formatted with :func:`fmt` unless they are strings).
        numeric: Per column: right-align and tabular figures.
        css_class: Class of the ``<table>`` (``sortable`` makes it sortable in the page).
        raw: Cells are trusted HTML (already escaped by the caller).
        digits: Decimals of float cells.
    """
    num = list(numeric) if numeric is not None else [False] * len(headers)

    def cell(tag: str, value: Any, k: int) -> str:
        text = value if isinstance(value, str) else fmt(value, digits)
        cls = ' class="num"' if num[k] else ""
        sort = ""
        if tag == "td" and isinstance(value, int | float) and not isinstance(value, bool):
            sort = f' data-sort="{value!r}"' if math.isfinite(value) else ' data-sort=""'
        return f"<{tag}{cls}{sort}>{text if raw and tag == 'td' else esc(text)}</{tag}>"

    head = "".join(cell("th", h, k) for k, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", v, k) for k, v in enumerate(row)) + "</tr>" for row in rows
    )
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return (
        f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def definition_list(items: Iterable[tuple[str, Any]]) -> str:
    """``<dl>`` of (term, value) pairs, both escaped."""
    inner = "".join(f"<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>" for k, v in items)
    return f'<dl class="meta">{inner}</dl>'


def render_page(
    *,
    title: str,
    subtitle: str,
    sections: Sequence[Section],
    script: str = "",
) -> str:
    """The whole HTML document: template, inline style, navigation and sections."""
    nav = " ".join(
        f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s in sections if s.omitted is None
    )
    page = string.Template(resource_text("report_page.html"))
    return page.substitute(
        version=esc(__version__),
        title=esc(title),
        subtitle=esc(subtitle),
        style=resource_text("report_style.css"),
        nav=nav,
        body="\n".join(s.html() for s in sections),
        footer=esc(f"Written by gliomaseg {__version__}. Research use only; not a diagnosis."),
        script=script,
    )


def write_page(
    path: str | Path,
    page: str,
    *,
    figures: Sequence[Figure] = (),
    figures_dir: str | Path | None = None,
) -> Path:
    """Write the page atomically, and each figure as ``<figures_dir>/<name>.png`` when asked."""
    out = Path(path)
    write_text_atomic(out, page)
    if figures_dir is not None:
        folder = Path(figures_dir)
        for fig in figures:
            write_bytes_atomic(folder / f"{fig.name}.png", fig.png)
    return out


def all_figures(sections: Iterable[Section]) -> list[Figure]:
    """Figures of the sections that were rendered, in page order."""
    return [f for s in sections if s.omitted is None for f in s.figures]


@dataclass
class Report:
    """A rendered page: the HTML, its figures (for ``--figures``), its warnings and, for a
    case with a reference, the scores against it
    (:func:`~gliomaseg.report.checks.reference_scores`)."""

    html: str
    figures: list[Figure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    reference_scores: dict[str, dict[str, float]] | None = None


def sortable_report(*, title: str, subtitle: str, sections: list[Section]) -> Report:
    """A page whose tables sort on a click (the cohort and training pages)."""
    page = render_page(
        title=title,
        subtitle=subtitle,
        sections=sections,
        script=resource_text("report_sortable.html"),
    )
    return Report(html=page, figures=all_figures(sections), sections=sections)
