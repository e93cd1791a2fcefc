"""Rendering the exhibit PDFs: Jinja2 HTML templates (``templates/``) through WeasyPrint.

PDF/A-2b (WeasyPrint's ``pdf/a-2b`` variant): fonts embedded (DejaVu, which covers German
umlauts and the typographic quotes), text selectable, no external resources. A long
full-page screenshot is cut into slices that each fill the width of a landscape page at
their full resolution, so that no part of the page is scaled down to illegibility.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exhibits.texts import TEXTS

TEMPLATES = Path(__file__).resolve().parent / "templates"
PDF_VARIANT = "pdf/a-2b"

# The printable area of a landscape A4 page (297 x 210 mm less the margins and the caption
# line of style.css), as a ratio: a slice is as tall as the screenshot is wide times this.
_SLICE_RATIO = 172 / 273


@dataclass(frozen=True)
class Slice:
    """One part of a screenshot, written as its own PNG for one page."""

    uri: str
    top: int
    bottom: int
    width: int
    height: int


@functools.cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_pdf(template: str, context: dict[str, Any], output: Path, *, base: Path) -> None:
    """Render ``template`` with ``context`` (plus the texts of ``context['lang']``) to a PDF.

    ``base`` is the folder relative image paths are read from; nothing else is fetched.
    """
    from weasyprint import HTML

    html = _environment().get_template(template).render(t=TEXTS[context["lang"]], **context)
    document = HTML(string=html, base_url=str(base), url_fetcher=_local_only(base))
    document.write_pdf(output, pdf_variant=PDF_VARIANT, uncompressed_pdf=False)


def _local_only(base: Path) -> Any:
    """A URL fetcher for files under ``base`` alone: a template never reaches the network,
    and a missing image stops the rendering instead of leaving a hole in an exhibit."""
    from urllib.parse import unquote, urlsplit

    from weasyprint.urls import URLFetcher

    root = base.resolve()

    class LocalFiles(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: Any = None) -> Any:
            parts = urlsplit(url)
            path = Path(unquote(parts.path)).resolve()
            if parts.scheme != "file" or not path.is_relative_to(root):
                raise ValueError(f"exhibit PDFs read files of their own work folder only: {url}")
            return super().fetch(url, headers)

    return LocalFiles(allowed_protocols={"file"}, fail_on_errors=True)


def slice_screenshot(png: Path, folder: Path, stem: str) -> list[Slice]:
    """Cut a full-page screenshot into page-sized slices (PNG files in ``folder``)."""
    from PIL import Image

    with Image.open(png) as image:
        image.load()
        width, height = image.size
        step = max(1, int(width * _SLICE_RATIO))
        slices = []
        for number, top in enumerate(range(0, height, step), start=1):
            bottom = min(height, top + step)
            path = folder / f"{stem}-{number:03d}.png"
            # compress_level 1: the slices only feed the PDF renderer, which re-encodes them.
            image.crop((0, top, width, bottom)).save(path, "PNG", compress_level=1)
            slices.append(Slice(path.resolve().as_uri(), top, bottom, width, height))
    return slices
