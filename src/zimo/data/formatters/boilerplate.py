"""Remove web/news boilerplate lines: navigation, share bars, SEO keyword headers, "related
articles" lists, source/editor bylines, copyright and site footers — Chinese and English.

Rules look at short lines only (a body paragraph that happens to mention "copyright" is never
touched) and are written against the *kinds* of boilerplate, not against particular sites, so
they carry over to pages we have not seen. trafilatura already drops most page chrome; these
lines are what survives inside the article container, and what plain-text dumps of pages keep.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from zimo.data.pipeline import Formatter, Step
from zimo.data.step_spec import StepSpec

MAX_LINE = 200  # longer lines are body text, whatever words they contain
FOOTER_MAX = 100

_SEP = r"[|｜·•/\\>»›→＞]"

_SHARE_WORDS = (
    "分享到|分享至|分享|转发|收藏|打印|复制链接|微信|朋友圈|微博|新浪微博|QQ空间|QQ好友|QQ|豆瓣|"
    "腾讯微博|人人网|抖音|小红书|facebook|twitter|x|linkedin|whatsapp|telegram|reddit|pinterest|"
    "email|e-mail|print|copy link|share|tweet|weibo|wechat|line"
)

LINE_RULES: list[tuple[str, re.Pattern[str]]] = [
    # SEO keyword / tag headers.
    (
        "seo_keywords",
        re.compile(r"^(关键词|关键字|标签|热门标签|热词|tags?|keywords?|topics?)\s*[:：]", re.I),
    ),
    # Share bars: a share lead-in, or a line made only of social network names.
    (
        "share",
        re.compile(
            r"^(分享到|分享至|分享本文|一键分享|share (this|on|via)|share this (article|story|page|post))\b.*",
            re.I,
        ),
    ),
    ("share", re.compile(rf"^(?:(?:{_SHARE_WORDS})\s*[:：,，、|｜/]?\s*){{2,}}$", re.I)),
    # Copyright, licences, ICP numbers, reprint notices, disclaimers: site footers.
    (
        "footer",
        re.compile(
            r"(©|\(c\)\s*\d{4}|copyright|版权所有|all rights reserved|icp备|icp证|公网安备|"
            r"未经(授权|许可|书面许可).{0,12}(转载|使用|复制)|转载请注明|版权声明|免责声明|"
            r"违法和不良信息举报|举报电话|举报邮箱|privacy policy|terms of (use|service)|cookie policy|"
            r"we use cookies|this (web)?site uses cookies)",
            re.I,
        ),
    ),
    # Bylines and source lines.
    (
        "byline",
        re.compile(
            r"^(来源|来源于|本文来源|文章来源|稿件来源|出处|责任编辑|责编|编辑|作者|记者|通讯员|"
            r"原标题|原文链接|原文地址|本文链接|图片来源|摄影|校对|审核)\s*[:：]",
        ),
    ),
    # Calls to action and page furniture.
    (
        "navigation",
        re.compile(
            r"^(返回顶部|回到顶部|返回首页|返回列表|上一篇|下一篇|上一页|下一页|点击查看|点击进入|"
            r"阅读原文|点击阅读原文|查看原文|展开全文|查看更多|加载更多|更多精彩|扫一扫|扫描二维码|"
            r"长按识别二维码|关注我们|关注公众号|订阅|登录|注册|立即下载|下载客户端|打开app|"
            r"back to top|previous( article| post)?|next( article| post)?|read more|continue reading|"
            r"sign in|sign up|log in|subscribe( now)?|follow us|advertisement|sponsored|"
            r"skip to (main )?content|home|首页)\b.{0,40}$",
            re.I,
        ),
    ),
    # Page furniture that appears mid-line: font-size toggles, "open on phone", follow prompts.
    (
        "navigation",
        re.compile(
            r"^(【[^】]{1,8}】\s*){2,}$|扫一扫在手机|在手机(上)?打开(当前|本)页|点击上方.{0,6}关注|"
            r"^本文(来自|转载自|经授权转载自|首发于)|^(图片|图源|题图)(来源|来自)?\s*[:：]|"
            r"(sign up|subscribe) (for|to) (our|the) (free )?newsletter|^click here to\b|"
            r"^(photo|image|illustration)( credit)?\s*:",
            re.I,
        ),
    ),
]

# A heading that opens a list of links to other articles; the short lines after it go too.
RELATED_HEADER = re.compile(
    r"^(相关阅读|相关新闻|相关文章|相关推荐|相关链接|延伸阅读|推荐阅读|猜你喜欢|热点推荐|热门推荐|"
    r"热门文章|热门新闻|精彩推荐|编辑推荐|今日推荐|往期回顾|往期推荐|更多阅读|为您推荐|"
    r"related( articles| stories| posts| news| content| coverage)?|more (stories|from|on this)|"
    r"you (may|might) also like|recommended( for you| stories)?|most (read|popular|viewed)|"
    r"trending( now)?|further reading|see also)\b\s*[:：]?",
    re.I,
)
RELATED_ITEM_MAX = 60  # list items under such a heading are short titles


_DATELINE = re.compile(r"(\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}|\d{1,2}:\d{2})")
_INLINE_BYLINE = re.compile(r"(来源|作者|记者|编辑|责任编辑|发布时间|发布日期|时间)\s*[:：]")
_EN_BYLINE = re.compile(
    r"^([Bb]y [A-Z][\w.'-]+( [A-Z][\w.'-]+){0,3}\s*($|[|,·•]|and\b)|"
    r"([Pp]ublished|[Uu]pdated|[Pp]osted|[Ll]ast updated)\s*(on|at)?\s*[:：]?\s*\w{3,9}\.? \d{1,2}|"
    r"(published|updated|posted)\s*[:：]?\s*\d{1,4}[-/.]\d{1,2})"
)


# As _SEP, but a slash or backslash between Latin letters is a path or a flag, not a menu.
_SEP_NO_PATHS = r"[|｜·•>»›→＞]|(?<=[\u3400-\u9fff])[/\\]|[/\\](?=[\u3400-\u9fff])|(?<=\s)[/\\]"


def _is_nav_menu(line: str, paths: bool = True) -> bool:
    """Menus and breadcrumbs: several short items between separators ("首页 | 新闻 | 体育").
    ``paths=False``: ``a/b/c`` between Latin letters is not a menu (page text with code)."""
    if line.startswith("|") and line.endswith("|"):
        return False  # a table row as extractors write it ("| 2 | Martin Truex Jr. | 5035 |")
    parts = [p.strip() for p in re.split(_SEP if paths else _SEP_NO_PATHS, line)]
    parts = [p for p in parts if p]
    if len(parts) < 3:
        return False
    return all(len(p) <= 12 for p in parts) and sum(len(p) for p in parts) <= 120


def classify_line(line: str, paths: bool = True) -> str | None:
    """The boilerplate kind of one line, or None for body text (``paths``: see _is_nav_menu)."""
    s = line.strip()
    if not s or len(s) > MAX_LINE:
        return None
    for i, (kind, pattern) in enumerate(LINE_RULES):
        if i == len(LINE_RULES) - 1:  # the furniture rule searches inside the line
            if pattern.search(s):
                return kind
        elif kind == "footer":
            # Footers are short and not prose; a long or sentence-like line needs three
            # distinct footer markers (© … 版权所有 … ICP备 …) to count.
            hits = len({m.group().lower() for m in pattern.finditer(s)})
            prose = len(s) >= 40 and s[-1] in "。！？.!?" and s.count("，") + s.count(",") >= 2
            if hits >= 3 or (hits and len(s) <= FOOTER_MAX and not prose):
                return kind
        elif pattern.match(s):
            return kind
    if _is_nav_menu(s, paths):
        return "navigation"
    if len(s) <= 80 and _INLINE_BYLINE.search(s) and (_DATELINE.search(s) or len(s) <= 40):
        return "byline"
    if len(s) <= 100 and _EN_BYLINE.match(s):
        return "byline"
    return None


class RemoveBoilerplate(Formatter):
    """Drop boilerplate lines; the kinds removed are counted in the step's ``extra`` stats."""

    name = "boilerplate"

    def __init__(self, extra_patterns: list[str] | None = None) -> None:
        super().__init__()
        self.extra = [re.compile(p) for p in (extra_patterns or [])]
        self.skip_formats: set[str] = set()  # formats a later page_lines step cleans instead

    def format(self, text: str) -> str:
        lines = text.split("\n")
        out: list[str] = []
        in_related = False
        for line in lines:
            s = line.strip()
            kind = None
            if RELATED_HEADER.match(s) and len(s) <= RELATED_ITEM_MAX * 4:
                kind, in_related = "related", True
            elif in_related and s and len(s) <= RELATED_ITEM_MAX:
                kind = classify_line(line) or "related"
            else:
                if s:
                    in_related = False
                kind = classify_line(line)
                if kind is None and any(p.search(s) for p in self.extra):
                    kind = "custom"
            if kind is None:
                out.append(line)
            else:
                self.stats.extra[kind] += 1
        if len(out) == len(lines):
            return text
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()

    def apply(self, rec: dict[str, Any]) -> bool:
        # Chat messages are not web pages: only the text of document records is cleaned.
        if rec.get("text") is None:
            return False
        if self.skip_formats and (rec.get("meta") or {}).get("format") in self.skip_formats:
            return False
        return super().apply(rec)


class BoilerplateSpec(StepSpec):
    """Remove navigation, share buttons, related-article lists, SEO keyword headers, footers."""

    step: Literal["boilerplate"] = "boilerplate"
    extra_patterns: list[str] = Field(default_factory=list)  # regexes; a matching line goes

    @field_validator("extra_patterns")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        import re

        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {pattern!r} ({e})") from e
        return v

    def build(self) -> Step:
        return RemoveBoilerplate(extra_patterns=self.extra_patterns)
