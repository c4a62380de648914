"""Language identification (zh / en / others) into ``meta.lang``, optionally filtering.

Script counting decides most cases outright (Han → zh, kana → ja, Hangul → ko, Cyrillic,
Arabic …); Latin-script text is told apart by function-word hits. Hand-written because the
need is coarse (zh vs en vs other) and speed matters; the model-based identifiers either need
a model download (fastText lid.176) or are slow pure-Python (langid.py).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from zimo.data.pipeline import Filter, Step, record_text
from zimo.data.step_spec import StepSpec

SAMPLE_CHARS = 3000

_SCRIPTS: list[tuple[str, re.Pattern[str]]] = [
    ("han", re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")),
    ("kana", re.compile("[\u3040-\u30ff\u31f0-\u31ff]")),
    ("hangul", re.compile("[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")),
    ("latin", re.compile("[A-Za-z\u00c0-\u024f]")),
    ("cyrillic", re.compile("[\u0400-\u04ff]")),
    ("arabic", re.compile("[\u0600-\u06ff\u0750-\u077f]")),
    ("devanagari", re.compile("[\u0900-\u097f]")),
    ("thai", re.compile("[\u0e00-\u0e7f]")),
    ("greek", re.compile("[\u0370-\u03ff]")),
    ("hebrew", re.compile("[\u0590-\u05ff]")),
]
_SCRIPT_LANG = {
    "cyrillic": "ru",
    "arabic": "ar",
    "devanagari": "hi",
    "thai": "th",
    "greek": "el",
    "hebrew": "he",
    "hangul": "ko",
}
# Latin letters per "unit" so that a Han character (≈ a word) and a Latin word weigh alike.
_LATIN_PER_UNIT = 4.5

_STOPWORDS = {
    "en": "the and of to a in is that it for was on are with as be this by at from have not or you "
    "but his they we an which their has were been will would can",
    "fr": "le la les de des du et est un une en que qui dans pour pas sur au avec ce il elle sont "
    "par plus nous vous ont",
    "de": "der die das und ist nicht ein eine zu den von mit sich des auf für im dem auch es sie "
    "wir werden oder aus bei",
    "es": "el la los las de del y que en un una es por con para no se su al lo como más pero sus "
    "le ya o fue este",
    "it": "il la di che e è un una per non in con del della sono le si da gli al come anche più",
    "pt": "o a os as de do da e que em um uma para com não por se na no mais como dos das foi ao",
    "nl": "de het een en van is dat op te in voor niet met zijn er aan ook als bij maar om dan",
    "id": "yang dan di dengan untuk dari ini itu dalam tidak akan pada adalah ke juga karena",
}
_STOP_SETS = {k: set(v.split()) for k, v in _STOPWORDS.items()}
_WORD = re.compile(r"[a-zà-ÿ']+")


def detect_language(text: str) -> tuple[str, float]:
    """``(code, confidence)``: ISO 639-1 where known, ``"und"`` when there is no text to judge."""
    sample = text[:SAMPLE_CHARS]
    counts = {name: len(p.findall(sample)) for name, p in _SCRIPTS}
    cjk = counts["han"] + counts["kana"]
    if counts["kana"] >= max(3, 0.05 * cjk):
        counts["han"], counts["kana"] = 0, cjk  # Japanese mixes kanji and kana
    units = {
        k: (v / _LATIN_PER_UNIT if k in ("latin", "cyrillic", "greek") else v)
        for k, v in counts.items()
    }
    total = sum(units.values())
    if total < 1:
        return "und", 0.0
    script = max(units, key=units.get)  # type: ignore[arg-type]
    share = units[script] / total
    if script == "han":
        return "zh", round(share, 3)
    if script == "kana":
        return "ja", round(share, 3)
    if script != "latin":
        return _SCRIPT_LANG.get(script, script), round(share, 3)
    words = _WORD.findall(sample.lower())
    if not words:
        return "und", 0.0
    hits = {lang: sum(w in stops for w in words) for lang, stops in _STOP_SETS.items()}
    best = max(hits, key=hits.get)  # type: ignore[arg-type]
    if hits[best] == 0:
        # Headlines and name lists have no function words; plain-ASCII Latin text is
        # overwhelmingly English, accented text is not.
        if sample.isascii():
            return "en", round(share * 0.3, 3)
        return "other", round(share * 0.5, 3)
    ratio = hits[best] / sum(hits.values())
    return best, round(share * ratio, 3)


class LanguageFilter(Filter):
    """Writes ``meta.lang`` / ``meta.lang_score``; with ``keep`` drops other languages as
    ``lang_<code>``. Language counts go to the step's ``extra`` stats (the report's mix)."""

    name = "language"

    def __init__(self, keep: list[str] | None = None) -> None:
        super().__init__()
        self.keep = set(keep) if keep else None

    def filter(self, rec: dict[str, Any]) -> bool | tuple[bool, str]:
        lang, score = detect_language(record_text(rec))
        meta = rec.setdefault("meta", {})
        meta["lang"], meta["lang_score"] = lang, score
        self.stats.extra[lang] += 1
        if self.keep is not None and lang not in self.keep:
            return False, f"lang_{lang}"
        return True


class LanguageSpec(StepSpec):
    """Detect the language (zh / en / others) into ``meta.lang``; optionally keep only some."""

    step: Literal["language"] = "language"
    keep: list[str] | None = None  # e.g. ["zh", "en"]; None = annotate only, drop nothing

    def build(self) -> Step:
        return LanguageFilter(keep=self.keep)
