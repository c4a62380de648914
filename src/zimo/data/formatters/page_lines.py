"""Line-level page cleaning: keep the article, drop the site chrome around it (CJK-aware).

In the spirit of jusText (classify each block from its length, stop-word density and link
density, then let the neighbours decide the doubtful ones), C4 / Gopher / FineWeb's line filters
(does a line end like a sentence, how much of it is punctuation, digits, separators) — made to
work for Chinese, where a line has no spaces, sentences end in 。！？ and stop words come from
jieba's segmentation. jusText itself works on HTML blocks and ships no Chinese stop list, and
the line filters of C4 / FineWeb are English-only, so the decision is written here.

Each non-empty line is classed as

* ``good``: prose (long enough, with punctuation and function words),
* ``near``: a short sentence (ends in 。！？.!? …),
* ``short``: a title, a label, a list item,
* ``bad`` with a reason: chrome by its kind (navigation menu, breadcrumb, share bar, copyright
  footer, byline, subscription banner, spam keywords, a list of names between separators,
  link text, a line repeated within the page).

The article body runs from the first to the last cluster of ``good`` lines (clusters split by
runs of chrome; a cluster much smaller than the largest — a long disclaimer in the footer — is
not body). Inside the body only ``bad`` lines go: lists, short lines and headings of the article
stay, so the body is never cut into. Before the body, the lines nearest to it that look like a
title or a lead survive; everything else of the header goes as a block. After the body, short
sentences that continue it survive until the first chrome line; the footer goes as a block.
A page with no prose at all loses only its ``bad`` lines.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field

from zimo.data.filters.spam import line_spam
from zimo.data.formatters.boilerplate import RELATED_HEADER, RELATED_ITEM_MAX, classify_line
from zimo.data.pipeline import EXAMPLE_CHARS, Formatter, Reject, Step
from zimo.data.step_spec import StepSpec

PAGE_FORMATS = ("html", "txt", "md")
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# A word of any script written with spaces (Latin, Cyrillic, Greek, Arabic, Devanagari,
# Hangul …): letters and their combining marks, not digits, not Han or kana (those are counted
# per character). Python's ``\w`` leaves out combining marks (Hindi and Urdu vowel signs), so
# they are added explicitly.
_MARKS = "".join(
    chr(c) for c in range(0x300, 0x10000) if unicodedata.category(chr(c)).startswith("M")
)
_LETTER = rf"(?:[^\W\d_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[{re.escape(_MARKS)}])"
_LATIN_WORD = re.compile(rf"{_LETTER}+(?:['’-]{_LETTER}+)*")
# Sentence ends of CJK, Latin, Arabic-script (۔ ؟) and Indic (। ॥) text.
_SENT_END = tuple("。！？!?.…；;۔؟।॥")
_CLOSERS = "”’\"'）)】」』》 "
# Citation marks after a wiki sentence ("…正式揭牌启动。 [3] [5]", "…in 1990.[12]"): the
# sentence ends before them.
_CITES = re.compile(r"(?:\s*\[\d{1,3}(?:[-–,]\d{1,3})*\])+\s*$")
# Separators of menus, breadcrumbs, tag clouds and keyword headers.
# A slash, backslash or underscore separates only next to Han characters or after a space:
# between Latin letters it is a path, an identifier or a command-line flag
# (`/home/data/docker`, `SPRING_DATASOURCE_USERNAME`), not a menu.
_HAN_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SEPS = re.compile(
    rf"\s*(?:[|｜>»›→＞·•◆■●★／]|(?<=[{_HAN_CLASS}])[/\\_]+|[/\\_]+(?=[{_HAN_CLASS}])"
    rf"|(?<=\s)[/\\]|(?<=\s)_+|\s{{2,}}|-{{1,2}}(?=\s))\s*"
)
# 、 also joins items inside a sentence or a heading ("有方向、有立场、有原则"): as a list
# separator it counts only in long runs.
_ENUM_COMMA = re.compile(r"\s*、\s*")
_BRACKETED = re.compile(r"[（(【\[][^）)】\]]*[）)】\]]")
_URLISH = re.compile(
    r"<URL>|<EMAIL>|(?:https?://|www\.)\S+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|cn|net|org|html?|php|aspx?|jsp)\b\S*",
    re.I,
)
_DIGITS = re.compile(r"\d")
_RANK_SEP = re.compile(r"[.、,，:：)）\]】/\-_%％]")
# A number followed by a measure word or an ordinal suffix is a quantity or a date
# ("1月销量", "2nd place"), not a rank badge.
_QUANTITY = re.compile(r"[年月日号时点分秒岁个位名次期届章节条款项元万亿]|(?:st|nd|rd|th)\b", re.I)
# The head of a comment section, or one comment's author line: readers' comments are not the
# article, however much prose they hold.
_COMMENTS = re.compile(
    r"^(?:\d+\s+(?:comments?|responses?|replies)\b.*|(?:leave|post|add|write) a (?:comment|reply)\b.*|"
    r"join the (?:discussion|conversation)\b.*|(?:show|view|load|read) (?:all |more )?comments\b.*|"
    r"comments?\s*(?:\(\d+\))?\s*:?|.{1,40}\s(?:says|said|wrote):|"
    r"(?:网友|用户)?(?:评论|留言)(?:区|列表)?\s*[(（]?\d*[)）]?\s*[:：]?|"
    r"(?:发表|我要|查看|全部|最新|热门)(?:评论|留言).{0,10}|\d+\s*条(?:评论|留言|回复).{0,10})$",
    re.I,
)
# A date or a clock time in a short line: the dateline or byline of a page ("Nov. 19, 2019
# 8:03 am ET", "By Tess Bonn - 11/19/19 06:56 AM EST", "2024年5月22日 上午8:21").
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATELINE = re.compile(
    rf"\b\d{{1,2}}:\d{{2}}\b|\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b|"
    rf"\b\d{{1,2}}\s+{_MONTH},?\s+\d{{4}}\b|\b\d{{1,2}}/\d{{1,2}}/\d{{2,4}}\b|"
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b|\d{4}年\d{1,2}月\d{1,2}日|"
    r"\b\d+\s+(?:minutes?|hours?|days?|weeks?)\s+ago\b|"
    r"\d+\s*(?:秒|分钟|分鐘|小时|小時|天|日|周|週|星期|个月|個月)前",
    re.I,
)
DATELINE_WORDS = 8
# The heading of a reference list (a wiki's citations, an article's sources): the text has
# ended; what follows is bibliography and links, which the body does not run into.
_REFERENCES = re.compile(
    r"^(?:参考文献|参考资料|参考来源|资料来源|引用来源|外部链接|references|bibliography|sources|"
    r"works cited|citations|external links)\s*(?:\[(?:编辑|編輯|edit)\])?\s*[:：]?$",
    re.I,
)
_TEASER = re.compile(r"(?:…|\.\.\.|。。。)\s*$")
_PROSE_PUNCT = re.compile(r"[，。！？；]|[,.;!?](?=\s)")
_PUNCT_IN = re.compile(r"[，,；;：:、。！？!?]")
_CODEISH = re.compile(r"[=\\{}();<>$]")
_TABLE_ROW = re.compile(r"^\|.*\|$")
_HEADING_MD = re.compile(r"^#{1,6}\s+\S")
_CTA = re.compile(
    r"(订阅|关注|下载|注册|购买|咨询|领取|加入|扫码|添加)(我们|本站|本号|公众号|微信|客户端|app|简报|"
    r"newsletter|通讯)|点击(这里|此处|订阅|关注|下载|注册|购买|咨询|领取|进入|查看|阅读)|"
    r"(立即|马上|免费)(订阅|下载|注册|领取|咨询|体验)|订阅(我们的)?(简报|周报|日报|通讯|邮件)|"
    r"\b(subscribe|sign up|register)\b.{0,60}\b(newsletters?|updates|inbox|free)\b|"
    r"\b(click here|download (our|the) app|follow us on|join our)\b|"
    # A newsletter sign-up box: its prompts, its consent line and its thank-you.
    r"\b(explore|browse|see) (all |our )?newsletters\b|\bto your (subscription|inbox)\b|"
    r"\bby (submitting|signing up|subscribing|entering|providing) (your|an?|this)\b|"
    r"\bthanks? (you )?for (signing up|subscribing)\b|"
    r"^(advertisement|sponsored( content)?|ad\s*[•·]|广告|廣告|赞助|贊助|推广|推廣)\s*[:：]?",
    re.I,
)
# Chinese function words. jieba segments; this list says which segments carry grammar rather
# than content (jusText has no Chinese stop list, jieba ships none for this use).
STOP_ZH = frozenset(
    "的 了 是 在 和 与 及 也 都 就 而 但 并 或 被 把 将 对 从 向 为 以 于 之 其 这 那 这个 那个 "
    "这些 那些 我们 你们 他们 她们 它们 我 你 他 她 它 一个 没有 不 很 还 又 更 最 所以 因为 如果 "
    "虽然 但是 可以 已经 因此 通过 由于 以及 等 着 过 让 给 到 会 能 要 有 说 上 中 下 后 时 地 "
    "得 吗 呢 吧 啊 自己 这样 什么 如何 所 因 则 却 再 才 只 一些 这种 并且 而且 以后 之后 目前 "
    "表示 认为 进行 就是 不是 还是 这里 那里 其中 如此 一直 曾 正在".split()
)


@lru_cache(maxsize=1)
def _stoplists() -> dict[str, frozenset[str]]:
    import justext

    return {name: frozenset(justext.get_stoplist(name)) for name in justext.get_stoplists()}


def _stop_en() -> frozenset[str]:
    return _stoplists()["English"]


def pick_stoplist(text: str) -> frozenset[str]:
    """jusText's stop list (100 languages) that covers most of the page's Latin-script words.

    A page in Italian or German read with English stop words looks like it has no prose at all.
    """
    words = Counter(w.lower() for w in _LATIN_WORD.findall(text[:20000]))
    if not words:
        return _stop_en()
    best, best_hits = "English", -1
    for name, stops in _stoplists().items():
        hits = sum(c for w, c in words.items() if w in stops)
        if hits > best_hits:
            best, best_hits = name, hits
    return _stoplists()[best]


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs its dictionary load on first use
    return jieba


def stop_density(line: str, cjk: bool, stops: frozenset[str] | None = None) -> float:
    """Share of tokens that are function words (jieba tokens for Chinese, words otherwise)."""
    if cjk:
        toks = [t for t in _jieba().lcut(line, HMM=False) if _CJK.search(t)]
        return sum(t in STOP_ZH for t in toks) / max(1, len(toks))
    words = [w.lower() for w in _LATIN_WORD.findall(line)]
    stops = stops if stops is not None else _stop_en()
    return sum(w in stops for w in words) / max(1, len(words))


TITLE_CASE_WORDS = 4  # content words a line needs before its capitals say "headline"
TITLE_CASE_SHARE = 0.85


def title_case(line: str, stops: frozenset[str] | None = None) -> bool:
    """Whether a Latin-script line capitalises (nearly) every content word, as headlines do.
    Function words (the page language's stop list) are left out: title case keeps "of", "the",
    "and" in lower case."""
    stops = stops if stops is not None else _stop_en()
    content = [w for w in _LATIN_WORD.findall(line) if w.lower() not in stops and len(w) > 1]
    if len(content) < TITLE_CASE_WORDS:
        return False
    caps = sum(1 for w in content if w[0].isupper())
    return caps >= TITLE_CASE_SHARE * len(content)


def _items(s: str) -> list[str]:
    return [p for p in _SEPS.split(s) if p and p.strip()]


def list_like(s: str, cjk: bool) -> int:
    """How many short items a separator-joined line holds (0 if it is not such a list).

    Menus, breadcrumbs, tag clouds, keyword headers and footers of place names are short items
    between separators; a sentence is one long item.
    """
    if _PROSE_PUNCT.search(s):
        return 0  # commas and full stops: a sentence (、 between names is not enough)
    items = _items(s)
    if len(items) < 3:
        # 、 inside brackets enumerates within one item ("上海植物园（南区温室、盆景园、兰室）").
        flat = _BRACKETED.sub("", s)
        items = [p for p in _ENUM_COMMA.split(flat) if p.strip()]
        if len(items) < 5:
            return 0
    lens = sorted(len(p.strip()) for p in items)
    median = lens[len(lens) // 2]
    limit = 14 if cjk else 30
    if median > limit or any(p.strip().endswith(("。", "！", "？")) for p in items[:-1]):
        return 0
    # Space-separated CJK words ("东城区 西城区 朝阳区") count only when spaces are the joints.
    return len(items)


class LineInfo:
    __slots__ = ("text", "n", "cjk", "words", "cls", "reason", "ends", "heading")

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.cjk = len(_CJK.findall(text))
        self.words = len(_LATIN_WORD.findall(text))
        self.cls = "short"
        self.reason: str | None = None
        self.ends = _CITES.sub("", text).rstrip(_CLOSERS).endswith(_SENT_END)
        self.heading = False


def _is_cjk(li: LineInfo) -> bool:
    return li.cjk >= max(2, li.words)


def classify(lines: list[str], extracted: bool = False) -> list[LineInfo | None]:
    """Class every line (None for blank lines). ``extracted``: text from the HTML extractor,
    whose table rows (``| a | b |``) are content, not lists."""
    stops = pick_stoplist("\n".join(lines))
    counts = Counter(ln.strip() for ln in lines if ln.strip())
    out: list[LineInfo | None] = []
    in_related = False
    for raw in lines:
        s = raw.strip()
        if not s:
            out.append(None)
            continue
        li = LineInfo(s)
        cjk = _is_cjk(li)
        md_heading = bool(_HEADING_MD.match(s))
        body = s.lstrip("#").strip() if md_heading else s
        # Hard evidence of chrome, whatever the position.
        reason = None
        if RELATED_HEADER.match(body) and len(body) <= RELATED_ITEM_MAX * 4:
            reason, in_related = "related", True
        elif in_related and len(body) <= RELATED_ITEM_MAX and not li.ends:
            reason = "related"
        else:
            in_related = False
            reason = classify_line(body, paths=False)
            if reason is None:
                cat = line_spam(body)
                if cat:
                    reason = f"spam:{cat}"
            if reason is None and li.n <= 80 and _COMMENTS.match(body):
                reason = "comments"
            if reason is None and _REFERENCES.match(body):
                reason = "references"
            if reason is None and li.n <= 160 and _CTA.search(body):
                reason = "banner"
            if reason is None and not (extracted and _TABLE_ROW.match(body)):
                n_items = list_like(body, cjk)
                if n_items >= 4 or (n_items == 3 and not li.ends and li.n <= 40):
                    reason = "list"
            if reason is None:
                url_chars = sum(len(m) for m in _URLISH.findall(body))
                if url_chars >= 0.5 * len(body):
                    reason = "links"
        if reason is not None:
            li.cls, li.reason = "bad", reason
            out.append(li)
            continue
        if md_heading:
            li.heading = True
            out.append(li)
            continue
        # Prose or not: length, inner punctuation, function words.
        if cjk:
            # A headline can be long and carry a comma; prose ends like a sentence or runs on.
            if (
                li.cjk >= 20
                and (li.ends or li.cjk >= 50)
                and _PUNCT_IN.search(s)
                and stop_density(s, True) >= 0.04
            ):
                li.cls = "good"
            elif li.ends and li.cjk >= 6:
                li.cls = "near"
            elif li.cjk >= 12 and _PUNCT_IN.search(s) and stop_density(s, True) >= 0.08:
                li.cls = "near"
        else:
            # jusText's thresholds (long and 30% stop words), with a shorter bar for a line that
            # ends like a sentence: headlines of 10+ words do not.
            sd = stop_density(s, False, stops) if li.words >= 4 else 0.0
            if (li.n >= 150 and sd >= 0.3) or (li.n >= 60 and li.ends and sd >= 0.25):
                li.cls = "good"
            elif li.ends and li.words >= 4:
                li.cls = "near"
            elif li.words >= 6 and sd >= 0.2 and li.n >= 100:
                li.cls = "near"
        if li.cls != "short" and not cjk and title_case(s, stops):
            # Every content word capitalised is a headline, not a sentence: a list of them after
            # the text is a feed of other stories ("Most Read", "Recommended for You"), and a
            # headline ending in "!" or "?" must not read as prose that continues the article.
            # Prose capitalises names and, in German, nouns, never every word.
            li.cls = "short"
        if li.cls != "short" and _TEASER.search(s):
            # A paragraph cut off with an ellipsis is a teaser of another page (feeds, related
            # stories, search results): soft chrome, kept only inside the body.
            li.cls, li.reason = "short", "teaser"
        digits = len(_DIGITS.findall(s))
        if li.cls == "short":
            if counts[s] >= 2 and li.n <= 60:
                li.reason = "repeated"  # soft: a menu item or a title echoed by the page
            elif digits >= 0.4 * li.n and li.n >= 4:
                li.reason = "digits"
            elif (
                li.reason is None
                and li.words <= DATELINE_WORDS
                and li.cjk <= 2 * DATELINE_WORDS
                and _DATELINE.search(s)
            ):
                li.reason = "dateline"  # soft, like digits: furniture above or below a text
        out.append(li)
    return out


def _tiny(li: LineInfo) -> bool:
    return (li.cjk <= 5 and li.words <= 2) or li.n <= 3


def _heading_like(li: LineInfo) -> bool:
    if li.heading:
        return True
    return li.reason is None and not _tiny(li) and li.n <= 120


# A field of the article's own listing: a short label, a colon, a value with a figure
# ("成人票原价：60元", "Phone: 555-0100"). A credit ("Photo: Jane Doe") is furniture.
_FIELD = re.compile(r"^[^:：]{1,12}[:：]\s*\S*\d")


def _structured(li: LineInfo) -> bool:
    """A short line of the article's own list: a field, or an item with its mark ("5、上海欢乐谷",
    "(2) ..."). Listings repeat their labels and carry numbers, so the soft reasons (repeated,
    digits) mark these lines without making them chrome."""
    if li.cls == "bad" or _tiny(li) or li.reason == "dateline" or _stamp(li):
        return False  # "Posted: 18 Nov 2019 8:11 pm" is the page's furniture
    return bool(_FIELD.match(li.text) or _LIST_MARK.match(li.text))


def _chrome(li: LineInfo) -> bool:
    """Chrome for splitting the body: a bad line, or a repeated / digit line that is not code.
    A teaser is only doubtful: a quotation trailing off in "…" happens inside articles too."""
    if _photo_credit(li):
        return False  # a picture's credit and caption sit inside the text
    if li.cls == "bad":
        return True
    if _structured(li):
        return False
    return li.reason not in (None, "teaser") and not _CODEISH.search(li.text)


# The credit line of a picture inside an article ("Image copyright Getty Images", "图片来源：
# 视觉中国", "Photo: Reuters"): it goes, but it does not part the text around the picture.
_PHOTO_CREDIT = re.compile(
    r"^(?:image|photo|picture|pic)s?\s*(?:copyright|credit|source|caption|by)?\b|"
    r"^(?:图片|照片|图像|配图|图)\s*(?:来源|来自|版权|提供|说明)|(?:供图|摄影)\s*[:：]?",
    re.I,
)
PHOTO_CREDIT_CHARS = 40


def _photo_credit(li: LineInfo) -> bool:
    return li.n <= PHOTO_CREDIT_CHARS and bool(_PHOTO_CREDIT.search(li.text))


def _mark_rankings(infos: list[LineInfo | None]) -> None:
    """Lines that start 1, 2, 3 … with the number glued to the text ("1银行紧跟黄金投资热潮")
        are a most-read ranking whose rank badges lost their markup; an article's own numbered
        list puts a separator after the number ("1、", "1.", "(1)"). Three in a row that do not end
    like sentences are chrome."""
    run: list[int] = []

    def close() -> None:
        # Headlines do not end in a full stop; glued footnotes ("1乡：家乡。") do.
        ends = sum(1 for k in run if infos[k].ends)  # type: ignore[union-attr]
        if len(run) >= 3 and ends <= len(run) // 4:
            for k in run:
                infos[k].cls, infos[k].reason = "bad", "ranking"  # type: ignore[union-attr]
        run.clear()

    for i, li in enumerate(infos):
        if li is None:
            continue
        want = str(len(run) + 1)
        glued = (
            li.text.startswith(want)
            and len(li.text) > len(want) + 1
            and not _RANK_SEP.match(li.text[len(want)])
            and not _QUANTITY.match(li.text, len(want))
            and (len(run) > 0 or not li.text[len(want)].isdigit())
        )
        if not glued:
            close()
            glued = (
                li.text.startswith("1")
                and len(li.text) > 2
                and not _RANK_SEP.match(li.text[1])
                and not _QUANTITY.match(li.text, 1)
                and not li.text[1].isdigit()
            )
        if glued:
            run.append(i)
    close()


def _clusters(infos: list[LineInfo | None], good: list[int], feed: bool) -> list[list[int]]:
    """Group good lines. Three chrome lines, or six lines that are not prose, between two good
    lines split them: a menu, a comment box or a list of headlines separates the article from
    a cookie notice or a footer disclaimer, while an article's own short list rarely runs that
    long (and if it does, both halves are large and both stay body). On a ``feed`` page (see
    :func:`_is_feed`) a time stamp between them splits them too."""
    groups = [[good[0]]]
    for a, b in zip(good, good[1:], strict=False):
        between = [infos[k] for k in range(a + 1, b) if infos[k] is not None]
        chrome = sum(1 for li in between if _chrome(li))  # type: ignore[arg-type]
        other = sum(1 for li in between if li.cls == "short" and not _structured(li))  # type: ignore[arg-type]
        if chrome >= 3 or other >= 6 or (feed and any(_stamp(li) for li in between)):
            groups.append([b])
        else:
            groups[-1].append(b)
    return groups


# Lines of page furniture that sit between an article's title and its text: the date, the
# source and author, share and font-size buttons, a view count. Crossing them does not end the
# header walk; a menu, a list, a spam line or a footer does.
_META_REASONS = ("byline", "share", "banner", "navigation", "seo_keywords")
LEAD_LINES = 4  # subtitles / deck lines directly above the text
TITLE_LINES = 2  # title and kicker above the furniture
META_LINES = 12  # furniture lines between the title and the text


def _meta_line(li: LineInfo) -> bool:
    if li.cls == "bad":
        return li.reason in _META_REASONS
    return _tiny(li) or li.reason in ("digits", "repeated", "dateline")


def _cut_header(
    infos: list[LineInfo | None], start: int, keep: list[bool], why: list[str | None]
) -> None:
    """Walk up from the body: keep the deck lines right above it, cross one run of furniture
    (date, byline, share bar), keep the title above that, and cut everything else as a block.

    A news page reads, top down: menus, breadcrumb, *title*, date / source / share buttons,
    *subtitles*, text. Only the italic parts are the article.
    """

    def cut(j: int, reason: str) -> None:
        keep[j], why[j] = False, reason

    def title_like(li: LineInfo) -> bool:
        # A title is often echoed by the page (breadcrumb, <h1>, share text): its copy nearest
        # the text is the one kept, earlier copies go with the header.
        return li.reason == "repeated" and not _tiny(li) and li.n <= 120

    phase, kept, meta = "lead", 0, 0
    i = start - 1
    while i >= 0:
        li = infos[i]
        if li is None:
            i -= 1
            continue
        heading = li.cls != "bad" and (
            _heading_like(li) or li.cls in ("good", "near") or title_like(li)
        )
        if phase == "lead":
            if heading and kept < LEAD_LINES:
                kept += 1
                keep[i], why[i] = True, None
                i -= 1
                continue
            phase, kept = "meta", 0
        if phase == "meta":
            if _meta_line(li) and not title_like(li) and meta < META_LINES:
                meta += 1
                if li.cls != "bad":
                    cut(i, "header")
                i -= 1
                continue
            phase = "title"
        if phase == "title" and heading and kept < TITLE_LINES:
            kept += 1
            keep[i], why[i] = True, None
            i -= 1
            continue
        break
    for j in range(i, -1, -1):
        if infos[j] is not None and infos[j].cls != "bad":  # type: ignore[union-attr]
            cut(j, "header")


# An article's own list marks its items ("- ", "1.", "(2)") or gives them a value ("成人票：60元");
# a menu, a share bar or a tag list that sits inside the body span is a run of bare labels.
_LIST_MARK = re.compile(r"^\s*(?:[-*•·▪◦–]|\d+[.、)）]|[（(]\d+[)）]|[a-z][.)]\s)", re.I)
_LABEL_VALUE = re.compile(r"[:：]")
MENU_RUN = 5  # bare labels in a row that make a menu
MENU_WORDS = 3  # a label has at most this many words …
MENU_CJK = 8  # … or Han characters


def _menu_item(li: LineInfo) -> bool:
    return (
        li.cls == "short"
        and not li.heading
        and not li.ends
        and li.reason in (None, "repeated", "digits")
        and li.words <= MENU_WORDS
        and li.cjk <= MENU_CJK
        and not _LIST_MARK.match(li.text)
        and not _LABEL_VALUE.search(li.text)
        and not _CODEISH.search(li.text)
    )


def _cut_menu_runs(
    infos: list[LineInfo | None], start: int, end: int, keep: list[bool], why: list[str | None]
) -> None:
    """Inside the body span, cut runs of ``MENU_RUN`` or more bare labels (a share bar, a tag
    list, a site menu between two parts of the text)."""
    run: list[int] = []

    def close() -> None:
        if len(run) >= MENU_RUN:
            for k in run:
                keep[k], why[k] = False, "menu"
        run.clear()

    for i in range(start, end + 1):
        li = infos[i]
        if li is None:
            continue
        if _menu_item(li):
            run.append(i)
        else:
            close()
    close()


# A cookie notice: cookies together with what they do to the reader's browser or data (a
# recipe's "cookies" has no browser, consent or tracking beside it).
_COOKIE = re.compile(r"\bcookies?\b|\bcookie", re.I)
_COOKIE_CONTEXT = re.compile(
    r"\b(?:browser|device|consent|track\w*|opt[- ]out|third[- ]part\w*|advertis\w*|"
    r"personal (?:data|information)|privacy|preferences|analytics|website|services?)\b|"
    r"浏览器|瀏覽器|隐私|隱私|个人信息|個人資料|同意",
    re.I,
)


def _policy(text: str) -> bool:
    return bool(_COOKIE.search(text) and _COOKIE_CONTEXT.search(text))


# A paragraph broken across lines ends its line on a comma or a colon; one clipped by a feed
# ends mid-word.
_CONTINUES = tuple("，,：:；;、—-（(")
CLIPPED_CJK = 50
CLIPPED_WORDS = 30


def _clipped(li: LineInfo) -> bool:
    """A long paragraph that ends neither like a sentence nor on a continuing mark."""
    long = li.cjk >= CLIPPED_CJK if _is_cjk(li) else li.words >= CLIPPED_WORDS
    return long and not li.ends and not li.text.endswith(_CONTINUES)


# A line of a shell script or program: code punctuation, a comment or a flag at its start, or a
# lower-case command with no Han text and no sentence end ("docker logs grafana", "fi").
_CODE_START = re.compile(r"^(?:#[\s!]|//|--?[A-Za-z]|\$\s|[a-z][\w.-]*(?:\s|$))")


def _code_line(li: LineInfo) -> bool:
    if _CODEISH.search(li.text):
        return True
    return bool(_CODE_START.match(li.text)) and not li.ends and (li.cjk == 0 or li.text[0] == "#")


CODE_GAP_SHARE = 0.5  # of a gap's lines that are code for it to be the article's code block
_PAIR_TOKEN = re.compile(rf"[{_HAN_CLASS}]|{_LETTER}+")
TOPIC_GAP = 40  # lines between a cluster and the body that a shared topic may bridge
TOPIC_MIN = 20  # word pairs a cluster needs before its topic is judged
TOPIC_SHARE = 0.3  # of its pairs found in the body
# Chrome lines that an article's own table of contents or fact box also makes: numbered
# headings glued to their numbers, a list of short items.
_SOFT_BAD = ("ranking", "list")


def _pairs(texts: Iterable[str]) -> set[tuple[str, str]]:
    """Pairs of neighbouring tokens (Han characters, words) of some lines."""
    out: set[tuple[str, str]] = set()
    for t in texts:
        toks = [x.lower() for x in _PAIR_TOKEN.findall(t)]
        out.update(zip(toks, toks[1:], strict=False))
    return out


def _lone(infos: list[LineInfo | None], group: list[int]) -> bool:
    """Whether no two prose lines of a cluster follow each other directly."""
    for a, b in zip(group, group[1:], strict=False):
        if all(infos[j] is None for j in range(a + 1, b)):
            return False
    return True


FEED_STAMPS = 3  # dated items that make a page carry a feed


def _is_feed(infos: list[LineInfo | None]) -> bool:
    """Whether the page lists dated items (a feed of other stories under or beside the text):
    then each time stamp starts a new item, which is not the article's continuation."""
    items = 0
    for i, li in enumerate(infos):
        if _stamp(li):
            near = [x for x in infos[max(0, i - 3) : i + 4] if x is not None and x is not li]
            items += any(x.cls in ("good", "near") for x in near)
    return items >= FEED_STAMPS


def _stamp(li: LineInfo | None) -> bool:
    """A short line that dates an item: "法新社·2 天前", "May 3, 2024 10:02". An embedded
    post's signature ("— Jane Doe (@jdoe) May 3, 2024") dates a quotation inside the text."""
    return (
        li is not None
        and li.cls not in ("good", "near")
        and "@" not in li.text
        and not li.text.startswith(("—", "–", "-"))
        and li.words <= DATELINE_WORDS
        and li.cjk <= 2 * DATELINE_WORDS
        and bool(_DATELINE.search(li.text))
    )


def _prose_at(infos: list[LineInfo | None], k: int) -> bool:
    """Whether the first non-blank line from ``k`` on is prose."""
    for li in infos[k:]:
        if li is not None:
            return li.cls in ("good", "near")
    return False


def _body_span(infos: list[LineInfo | None]) -> tuple[int, int, list[int], list[int]]:
    """The article body's first and last line, the page's prose lines, and the lines of
    furniture between two parts of the body that only their shared topic joined."""
    # Short sentences (near) join the clusters: stories and interviews are made of them.
    prose = [i for i, li in enumerate(infos) if li is not None and li.cls in ("good", "near")]
    feed = _is_feed(infos)
    groups = _clusters(infos, prose, feed)
    # A paragraph counts in full when a neighbouring line is prose too: an article's
    # paragraphs follow each other, while a feed's teasers each sit alone between a headline
    # and a date line.
    pos = {k: n for n, k in enumerate(prose)}

    def weight(k: int) -> float:
        li = infos[k]
        w = 1.0 if li.cls == "good" else 0.5  # type: ignore[union-attr]
        n = pos[k]
        near = [prose[m] for m in (n - 1, n + 1) if 0 <= m < len(prose)]
        alone = all(
            any(infos[j] is not None for j in range(min(k, m) + 1, max(k, m))) for m in near
        )
        if _clipped(li) and (k + 1 >= len(infos) or not _prose_at(infos, k + 1)):  # type: ignore[arg-type]
            # A paragraph cut off mid-word with no text after it is a feed's teaser, clipped to
            # a length by the site: a page of them outweighs a short article only by its count.
            w *= 0.2
        return w * (0.5 if alone else 1.0) * li.n  # type: ignore[union-attr]

    # A cookie notice is the site's policy text, never the article, however long.
    policy = {k for k in prose if _policy(infos[k].text)}  # type: ignore[union-attr]
    mass = [sum(0.0 if k in policy else weight(k) for k in g) for g in groups]
    if not any(mass):
        mass = [sum(weight(k) for k in g) for g in groups]
    # The body is the largest cluster, grown to its neighbours while they are substantial and
    # near: a cookie notice 200 menu lines above the article is not part of it.
    main = max(range(len(groups)), key=lambda k: mass[k])
    lo = hi = main

    def joins(k: int, a: int, b: int) -> bool:
        gap = [infos[j] for j in range(a + 1, b) if infos[j] is not None]
        if feed and any(_stamp(li) for li in gap) and _lone(infos, groups[k]):
            # The next dated item of a feed: a paragraph or two, each on its own between a
            # headline and a time stamp. Text that runs on in paragraphs after a date (an
            # update, an embedded post) is the article's.
            return False
        # Only a split made by a run of short lines (an inner list, captions) is bridged; a
        # split made by chrome (menus, repeated teaser labels) stays.
        chrome = sum(1 for li in gap if _chrome(li))  # type: ignore[arg-type]
        if not mass[k]:
            return False
        code = sum(1 for li in gap if _code_line(li))  # type: ignore[arg-type]
        if code >= CODE_GAP_SHARE * len(gap) and not any(
            li.cls == "bad" and li.reason not in (*_SOFT_BAD, "links")  # type: ignore[union-attr]
            for li in gap
        ):
            # A tutorial's code blocks between its paragraphs: commands repeat and carry URLs,
            # but no menu, footer or banner stands between the two parts.
            return True
        if chrome >= 3:
            return False
        if len(gap) <= 15 or (mass[k] >= 0.25 * mass[main] and len(gap) <= 40):
            return True
        # A long list of the article's own (a table of contents, sixty attractions with their
        # prices) holds no chrome and items with content; a menu's items are tiny.
        items = sum(1 for li in gap if not _tiny(li))  # type: ignore[arg-type]
        return chrome == 0 and items >= 0.8 * len(gap) and mass[k] >= 0.1 * mass[main]

    body_pairs = _pairs(infos[j].text for j in groups[main])  # type: ignore[union-attr]

    def same_topic(k: int, a: int, b: int) -> bool:
        # A lead paragraph above a wiki's infobox and table of contents, or a section after a
        # run of dates and figures, is cut off from the body by lines that look like furniture
        # but speaks of what the body speaks of: most of its word pairs are the body's. A
        # cookie notice, a disclaimer or a feed of other stories is not.
        # Code of a tutorial is the article's too (a URL in a command line reads as link text).
        gap = [
            li
            for li in (infos[j] for j in range(a + 1, b))
            if li is not None and not _CODEISH.search(li.text)
        ]
        if len(gap) > TOPIC_GAP or any(
            (li.cls == "bad" and li.reason not in _SOFT_BAD) or (feed and _stamp(li))  # type: ignore[union-attr]
            for li in gap
        ):
            return False
        pairs = _pairs(infos[j].text for j in groups[k] if infos[j].cls == "good")  # type: ignore[union-attr]
        return len(pairs) >= TOPIC_MIN and len(pairs & body_pairs) >= TOPIC_SHARE * len(pairs)

    bridged: list[int] = []

    def joins_or_topic(k: int, a: int, b: int) -> bool:
        if joins(k, a, b):
            return True
        if same_topic(k, a, b):
            # The furniture between goes (an infobox, a byline, buttons), the two parts stay.
            bridged.extend(
                j
                for j in range(a + 1, b)
                if infos[j] is not None and not _CODEISH.search(infos[j].text)  # type: ignore[union-attr]
            )
            return True
        return False

    while lo > 0 and joins_or_topic(lo - 1, groups[lo - 1][-1], groups[lo][0]):
        lo -= 1
    while hi < len(groups) - 1 and joins_or_topic(hi + 1, groups[hi][-1], groups[hi + 1][0]):
        hi += 1
    start, end = groups[lo][0], groups[hi][-1]
    # The body's first and last lines are the article's, not the notice beside it; a cluster of
    # nothing but notice lines does not join the body (see joins).
    inner = [k for k in prose if start <= k <= end and k not in policy]
    if inner:
        start, end = inner[0], inner[-1]
    return start, end, prose, [j for j in bridged if start < j < end]


def decide(lines: list[str], extracted: bool = False) -> tuple[list[bool], list[str | None]]:
    """For each line: keep it?, and the reason when it goes.

    ``extracted``: the text comes from an HTML extractor that already chose the article's
    blocks; then only chrome lines and the tiny or doubtful lines at the two edges go.
    """
    infos = classify(lines, extracted)
    if not extracted:
        _mark_rankings(infos)
    keep = [True] * len(lines)
    why: list[str | None] = [None] * len(lines)

    def cut(i: int, reason: str) -> None:
        if infos[i] is not None:
            keep[i], why[i] = False, reason

    for i, li in enumerate(infos):
        if li is not None and li.cls == "bad":
            cut(i, li.reason or "bad")
    # A title, caption or teaser echoed further down the page: keep its first copy. Code is
    # left alone (a repeated `-e ENV=dev \` is the script, not the page), and so are a
    # listing's fields ("成人票原价：60元" under two attractions). A repeated list item is not:
    # an extractor writes a kept menu's items as "- " lines too.
    seen: set[str] = set()
    for i, li in enumerate(infos):
        if (
            li is not None
            and keep[i]
            and li.n >= 4
            and not _CODEISH.search(li.text)
            and not (_structured(li) and _FIELD.match(li.text))
        ):
            if li.text in seen:
                cut(i, "repeated")
            seen.add(li.text)
    good = [i for i, li in enumerate(infos) if li is not None and li.cls == "good"]
    if not good:
        return keep, why
    if extracted:
        for order, reason in (
            (range(len(lines)), "header"),
            (range(len(lines) - 1, -1, -1), "footer"),
        ):
            for i in order:
                li = infos[i]
                if li is None or li.cls == "bad":
                    continue
                if li.cls == "short" and not li.heading and (_tiny(li) or li.reason):
                    cut(i, reason)
                    continue
                break
        return keep, why
    start, end, prose, bridged = _body_span(infos)
    for i in bridged:
        cut(i, "furniture")
    # The body ends where a comment section or a reference list begins (a comment count under
    # the title, before any text, does not count).
    heads = [
        k
        for k in range(start + 1, end)
        if infos[k] is not None and infos[k].reason in ("comments", "references")  # type: ignore[union-attr]
    ]
    if heads:
        end = max(k for k in prose if start <= k < heads[0])
    _cut_header(infos, start, keep, why)
    _cut_menu_runs(infos, start, end, keep, why)
    for i in range(start, end + 1):
        li = infos[i]
        if li is not None and li.cls not in ("good", "near") and _photo_credit(li):
            cut(i, "photo_credit")
    # Footer: sentences that continue the body stay until the first chrome line.
    stop = False
    for i in range(end + 1, len(lines)):
        li = infos[i]
        if li is None:
            continue
        if li.cls == "bad":
            if li.reason not in ("byline", "share"):
                stop = True
            continue
        # A paragraph the page cuts off ("…") right after the text is still the article's.
        if not stop and (li.cls in ("good", "near") and li.reason is None or li.reason == "teaser"):
            continue
        stop = True
        cut(i, "footer")
    return keep, why


def clean_page(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The page without its chrome, and the removed lines with their reasons."""
    lines = text.split("\n")
    keep, why = decide(lines)
    removed = [(lines[i].strip(), why[i] or "") for i in range(len(lines)) if not keep[i]]
    if not removed:
        return text, []
    out = "\n".join(ln for ln, k in zip(lines, keep, strict=True) if k)
    return re.sub(r"\n{3,}", "\n\n", out).strip(), removed


def page_diff(text: str, keep: list[bool], why: list[str | None], width: int = 160) -> str:
    """A diff a person can scan: ``-`` lines were cut (with the reason), two spaces were kept."""
    out = []
    for ln, k, r in zip(text.split("\n"), keep, why, strict=True):
        s = ln.strip()
        if not s:
            continue
        s = s if len(s) <= width else s[:width] + "…"
        out.append(f"  {s}" if k else f"- {s}   [{r}]")
    return "\n".join(out)


DIFF_DOCS = 20  # documents whose full diff the report shows
CUT_CHARS = 2000  # per record, the removed lines kept in meta.page_cut


class PageLines(Formatter):
    """Drop chrome lines of web pages and page-like text; counts removed lines per reason in
    ``extra`` and records the removed lines in ``meta.page_cut`` (first 2,000 characters)."""

    name = "page_lines"

    def __init__(self, formats: list[str] | None = None) -> None:
        super().__init__()
        self.formats = set(formats if formats is not None else PAGE_FORMATS)
        self.diffs = 0

    def format(self, text: str) -> str:
        return clean_page(text)[0]

    def apply(self, rec: dict[str, Any]) -> bool:
        text = rec.get("text")
        meta = rec.get("meta") or {}
        if text is None or meta.get("format") not in self.formats:
            return False
        lines = text.split("\n")
        keep, why = decide(lines, extracted=meta.get("format") == "html")
        if all(keep):
            return False
        new = re.sub(
            r"\n{3,}", "\n\n", "\n".join(ln for ln, k in zip(lines, keep, strict=True) if k)
        ).strip()
        cut = []
        size = 0
        for ln, k, r in zip(lines, keep, why, strict=True):
            if not k:
                self.stats.extra[r or "bad"] += 1
                if size < CUT_CHARS:
                    cut.append(f"[{r}] {ln.strip()[:300]}")
                    size += len(cut[-1])
        rec.setdefault("meta", {})["page_cut"] = "\n".join(cut)
        if not new:
            # Nothing but chrome: the record goes to the rejects whole, with the main reason.
            reasons = Counter(r for r, k in zip(why, keep, strict=True) if not k and r)
            spam = [r for r in reasons if r.startswith("spam:")]
            rec["_page_reject"] = max(spam, key=reasons.__getitem__) if spam else "only_chrome"
            return True
        rec["text"] = new
        self.stats.extra["lines_removed"] += sum(1 for k in keep if not k)
        if self.diffs < DIFF_DOCS:
            self.diffs += 1
            self.stats.add_example(
                f"diff {self.diffs:02d}",
                {
                    "id": str(rec.get("id")),
                    "diff": page_diff(text, keep, why)[: EXAMPLE_CHARS * 20],
                },
            )
        return True

    def run(self, records: Iterable[dict[str, Any]], reject: Reject) -> Iterator[dict[str, Any]]:
        for rec in records:
            self.stats.seen += 1
            if self.apply(rec):
                self.stats.changed += 1
            reason = rec.pop("_page_reject", None)
            if reason is not None:
                self.drop(rec, reason, reject)
                continue
            self.stats.kept += 1
            yield rec


class PageLinesSpec(StepSpec):
    """Line-level chrome removal for pages: header and footer blocks, menus, lists of names,
    banners, spam lines; the article body is never cut into."""

    step: Literal["page_lines"] = "page_lines"
    # PDF text-layer lines are layout lines, not paragraphs: judged line by line they would
    # look like chrome, so PDFs are left out by default.
    formats: list[str] = Field(default_factory=lambda: ["html", "txt", "md"])

    def build(self) -> Step:
        return PageLines(formats=self.formats)
