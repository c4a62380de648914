"""HTML: main-text extraction with trafilatura (drops menus, sidebars, comments)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from zimo.data.curate_config import ReadSpec
from zimo.data.readers.base import new_record, quarantine
from zimo.data.readers.html_captions import add_captions

MAX_HTML_CHARS = 20_000_000


def _only_links(html: str, text: str) -> bool:
    """Whether the extracted text is nothing but link labels (a page that is only navigation)."""
    if len(text) > 2000:
        return False
    import lxml.html

    try:
        anchors = lxml.html.fromstring(html).xpath("//a//text()")
    except Exception:  # noqa: BLE001 - unparsable markup: trust trafilatura's text
        return False
    rest = text
    for a in sorted((a.strip() for a in anchors), key=len, reverse=True):
        if a:
            rest = rest.replace(a, "")
    return not any(ch.isalnum() for ch in rest)


def read_html(f: IO[str], source: str, spec: ReadSpec) -> Iterator[dict[str, Any]]:
    html = f.read(MAX_HTML_CHARS + 1)
    if len(html) > MAX_HTML_CHARS:
        yield quarantine(source, 0, "too_large", format="html")
        return
    import trafilatura

    try:
        doc = trafilatura.bare_extraction(
            html,
            include_comments=False,
            include_tables=spec.html_tables,
            include_formatting=spec.html_formatting,
            favor_precision=spec.html_favor == "precision",
            favor_recall=spec.html_favor == "recall",
            with_metadata=True,
        )
    except Exception as e:  # noqa: BLE001 - lxml/trafilatura raise many types on broken markup
        yield quarantine(source, 0, "html_parse_error", str(e), format="html")
        return
    text = (getattr(doc, "text", None) or "").strip() if doc is not None else ""
    if not text or _only_links(html, text):
        yield quarantine(source, 0, "no_text", html[:300], format="html")
        return
    if spec.html_captions:
        text = add_captions(html, text)
    extra: dict[str, Any] = {}
    for key in ("title", "url", "date", "sitename"):
        value = getattr(doc, key, None)
        if value:
            extra[key] = str(value)
    yield new_record(text, source=source, offset=0, spec=spec, fmt="html", extra=extra)
