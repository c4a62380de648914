"""Figure captions that the HTML extractor dropped, put back beside the paragraph they follow.

trafilatura leaves out ``<figcaption>`` and ``class="…caption…"`` blocks, and on many Chinese
news and blog pages a caption (or a section question set under a picture) is part of the
article: magic-html's ground truth keeps 73 of the 79 captions of its Chinese article pages.
A caption comes back only where the page places it between text the extractor kept: a paragraph
of the article right before it and one right after it. A caption in a sidebar, a gallery or
under the last picture of the page has no such pair of neighbours and stays out (most
English sites' ground truth leaves captions out, so only those inside the text come back).
"""

from __future__ import annotations

import re

_WS = re.compile(r"\s+")
CAPTION_XPATH = (
    "//figcaption | //*[contains(concat(' ', normalize-space(@class), ' '), ' caption ')"
    " or contains(@class, '-caption') or contains(@class, 'caption-')"
    " or contains(@class, '_caption')]"
)
_BLOCKS = frozenset(
    "p div li h1 h2 h3 h4 h5 h6 td th blockquote pre figcaption dd dt section article".split()
)
MAX_CAPTION_CHARS = 300
MIN_ANCHOR_CHARS = 10  # a neighbouring block this long pins the caption's place
ANCHOR_TRIES = 3  # substantial blocks looked at on each side
ANCHOR_SPAN = 8  # blocks looked at on each side


def _squash(s: str) -> str:
    return _WS.sub("", s)


def _block_texts(doc: object) -> list[tuple[str, bool]]:
    """The page's text blocks in reading order: (text, inside a caption)."""
    caps = set()
    for el in doc.xpath(CAPTION_XPATH):  # type: ignore[attr-defined]
        caps.add(el)
        caps.update(el.iterdescendants())
    out: list[tuple[str, bool]] = []
    for el in doc.iter():  # type: ignore[attr-defined]
        if not isinstance(el.tag, str) or el.tag in ("script", "style", "noscript"):
            continue
        if el.tag in _BLOCKS and el in caps and el.getparent() not in caps:
            text = _WS.sub(" ", el.text_content()).strip()
            if text:
                out.append((text, True))
            continue
        if el in caps:
            continue
        # A block's own text (its children's text comes with them), so a paragraph is one item.
        own = " ".join(t.strip() for t in [el.text or ""] if t.strip())
        if own:
            out.append((own, False))
        if el.tail and el.tail.strip() and el.getparent() not in caps:
            out.append((el.tail.strip(), False))
    return out


def _find_line(lines: list[str], snippet: str) -> int | None:
    key = _squash(snippet)
    for i, ln in enumerate(lines):
        if key and key in _squash(ln):
            return i
    return None


def _anchor(blocks: list[tuple[str, bool]], order: range, lines: list[str]) -> int | None:
    """The extracted line holding one of the nearest substantial non-caption blocks in
    ``order`` (a credit or an inline label between picture and paragraph is skipped)."""
    tried = 0
    for m in order:
        t, c = blocks[m]
        if not c and len(t) >= MIN_ANCHOR_CHARS:
            j = _find_line(lines, t)
            if j is not None:
                return j
            tried += 1
            if tried >= ANCHOR_TRIES:
                break
    return None


def add_captions(html: str, text: str) -> str:
    """``text`` (the extractor's output, one block a line) with the page's dropped captions put
    back next to the article paragraph they follow or precede."""
    if "caption" not in html:
        return text
    import lxml.html

    try:
        doc = lxml.html.fromstring(html)
    except Exception:  # noqa: BLE001 - unparsable markup: keep the extractor's text
        return text
    blocks = _block_texts(doc)
    lines = text.split("\n")
    have = _squash(text)
    for k, (cap, is_cap) in enumerate(blocks):
        if not is_cap or len(cap) > MAX_CAPTION_CHARS or _squash(cap) in have:
            continue
        before = _anchor(blocks, range(k - 1, max(-1, k - 1 - ANCHOR_SPAN), -1), lines)
        after = _anchor(blocks, range(k + 1, min(len(blocks), k + 1 + ANCHOR_SPAN)), lines)
        if before is None or after is None or after < before:
            continue
        at = before + 1
        lines.insert(at, cap)
        have += _squash(cap)
    return "\n".join(lines)
