"""Boilerplate removal, language id, quality rules, near-dup and Traditional→Simplified."""

from __future__ import annotations

import random

import numpy as np
import pytest

from curate_fixtures import EN_BODY, ZH_BODY, shared_texts
from zimo.data.curate_config import build_steps
from zimo.data.dedup.near_dup import NearDedup, shingle_hashes
from zimo.data.filters.language import LanguageFilter, detect_language
from zimo.data.filters.quality import QualityFilter
from zimo.data.formatters.boilerplate import RemoveBoilerplate
from zimo.data.pipeline import run_steps
from zimo.records import make_record


def recs(*texts: str) -> list[dict]:
    return [make_record(t, source="mem", offset=i) for i, t in enumerate(texts)]


# --- boilerplate: written against kinds of chrome, tested on layouts not used to write it ----

ZH_PAGE = "\n".join(
    [
        "网站首页 > 国内新闻 > 社会",
        "标签：城市交通 地铁 早高峰",
        "2023-05-06 08:15:02　来源：南方日报　编辑：陈晓",
        *ZH_BODY,
        "点击阅读原文",
        "分享：微信 | 微博 | QQ空间",
        "延伸阅读：",
        "地铁三号线延长段开通",
        "公交线网优化方案公布",
        "本站所有文章未经许可不得转载，违者必究。",
        "Copyright © 2010-2023 南方网 粤ICP备09090909号",
    ]
)
EN_PAGE = "\n".join(
    [
        "Skip to main content",
        "Home | World | Business | Tech | Sport",
        "By Jane Doe | Updated Jan. 5, 2024",
        "Keywords: transit, budget, city council",
        *EN_BODY,
        "Share on Facebook Twitter LinkedIn",
        "You may also like",
        "Five cheap weekend trips",
        "Why rents keep rising",
        "We use cookies to improve your experience.",
        "(c) 2024 Metro Herald Media Group. All rights reserved.",
    ]
)


@pytest.mark.parametrize("page,body", [(ZH_PAGE, ZH_BODY), (EN_PAGE, EN_BODY)])
def test_boilerplate_removed_body_intact(page, body):
    step = RemoveBoilerplate()
    out = step.format(page)
    assert out.split("\n") == body
    kinds = set(step.stats.extra)
    assert {"navigation", "seo_keywords", "byline", "share", "related", "footer"} <= kinds


def test_boilerplate_keeps_long_paragraphs_that_mention_trigger_words():
    para = (
        "版权所有人认为，该公司未经授权转载其作品的行为侵犯了著作权，法院经审理后判决被告赔偿"
        "经济损失五万元，并在其网站首页刊登致歉声明，此案引发了业内对网络转载规则的广泛讨论。"
    )
    en = "Home prices rose 4% in March, the biggest gain this year, analysts said on Friday."
    legal = "The court said the site, which claimed all rights reserved, had copied the photos."
    para = f"{para}\n{legal}"
    step = RemoveBoilerplate()
    assert step.format(f"{para}\n{en}") == f"{para}\n{en}"


def test_boilerplate_skips_chat_records():
    rec = make_record(
        None, source="c", offset=0, messages=[{"role": "user", "content": "分享到：微信 微博"}]
    )
    res = run_steps([rec], [RemoveBoilerplate()])
    assert res.kept[0]["messages"][0]["content"] == "分享到：微信 微博"


# --- language ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,lang",
    [
        (ZH_BODY[0], "zh"),
        ("我用Python写了一个数据分析脚本，效果很好", "zh"),
        (EN_BODY[0], "en"),
        ("Quarterly Revenue Report Q3", "en"),
        (
            "Le conseil municipal a voté mardi pour étendre le réseau de bus dans les quartiers.",
            "fr",
        ),
        (
            "Der Stadtrat hat am Dienstag beschlossen, das Busnetz auf die nördlichen Bezirke auszuweiten.",
            "de",
        ),
        ("東京都は火曜日、バス路線を北部地域に拡大することを決めた。", "ja"),
        ("서울시는 화요일 버스 노선을 북부 지역으로 확대하기로 결정했다.", "ko"),
        ("Городской совет во вторник проголосовал за расширение автобусной сети.", "ru"),
        ("12345 !!!", "und"),
    ],
)
def test_detect_language(text, lang):
    assert detect_language(text)[0] == lang


def test_language_on_real_data_is_mostly_right():
    texts = shared_texts(3000)
    if not texts:
        pytest.skip("../shared/data is not available")
    zh = [t for t in texts if sum("\u4e00" <= c <= "\u9fff" for c in t) > len(t) * 0.5]
    en = [t for t in texts if t.isascii() and len(t) > 80]
    assert sum(detect_language(t)[0] == "zh" for t in zh) / len(zh) > 0.99
    assert sum(detect_language(t)[0] == "en" for t in en) / len(en) > 0.97


def test_language_filter_annotates_and_keeps_only_listed():
    res = run_steps(
        recs(ZH_BODY[0], EN_BODY[0], "Привет, как дела у тебя сегодня?"),
        [LanguageFilter(["zh", "en"])],
    )
    assert [r["meta"]["lang"] for r in res.kept] == ["zh", "en"]
    assert res.rejected[0]["reject_reason"] == "lang_ru"


# --- quality -----------------------------------------------------------------------------------


def test_quality_rules_catch_junk_and_pass_prose():
    q = QualityFilter()
    good = [*ZH_BODY, *EN_BODY, "短信：明天见"]
    junk = {
        "symbol_ratio": "★★★☆☆ ### $$$ @@@ ||| ~~~ " * 5 + "buy",
        "digit_ratio": "订单 2024101800123 2024101800124 2024101800125 2024101800126 2024101800127",
        "repeated_lines": "\n".join(
            ["点击这里立即领取限时优惠券，先到先得", "点击这里立即领取限时优惠券，先到先得"] * 3
            + ["今日特价商品清单如下，欢迎选购"]
        ),
        "repeated_ngrams": "便宜好用的手机壳 " * 12,
        "few_letters": "... --- ... --- 。。。 ，，， ！！！ ？？？ ... --- ... --- 。。。 ，，， ！！！ ？？？ ok",
    }
    for text in good:
        assert q.filter({"text": text}) is True, text
    for reason, text in junk.items():
        assert q.filter({"text": text}) == (False, reason), reason


def test_quality_false_positive_rate_on_real_text_is_low():
    texts = shared_texts(3000)
    if not texts:
        pytest.skip("../shared/data is not available")
    q = QualityFilter()
    dropped = sum(q.filter({"text": t}) is not True for t in texts)
    assert dropped / len(texts) < 0.08  # HC3/Alpaca answers are mostly clean prose


# --- near-dup ------------------------------------------------------------------------------------


def _edit(text: str, rng: random.Random) -> str:
    p = rng.randrange(len(text) // 2, len(text) - 5)
    return text[:p] + text[p + 3 :] + "。"


def test_near_dup_finds_planted_copies_cjk_and_english():
    texts = [t for t in shared_texts(800) if len(t) > 150][:300]
    if len(texts) < 100:
        pytest.skip("../shared/data is not available")
    rng = random.Random(3)
    planted = {}
    docs = list(texts)
    for _ in range(60):
        src = rng.randrange(len(texts))
        planted[len(docs)] = src
        docs.append(_edit(texts[src], rng))
    step = NearDedup(threshold=0.8)
    rep = step.duplicate_index(step.signatures_for_texts(docs))
    found = [i for i in planted if rep[i] != i]
    assert len(found) / len(planted) >= 0.9
    # originals are never dropped in favour of a later copy
    assert all(rep[i] <= i for i in range(len(docs)))
    false_drops = [i for i in range(len(texts)) if rep[i] != i]
    assert len(false_drops) <= 0.05 * len(texts)


def test_near_dup_step_drops_with_reason_and_pointer():
    a = "国家统计局今天发布数据显示前三季度工业增加值同比增长百分之四点六制造业增长较快" * 2
    b = a[:-4] + "增长较慢"
    c = "The city council voted on Tuesday to expand the bus network to the northern districts."
    res = run_steps(recs(a, b, c), build_steps({"steps": ["near_dup"]}))
    assert [r["text"] for r in res.kept] == [a, c]
    (dup,) = res.rejected
    assert dup["reject_reason"] == "near_duplicate"
    assert dup["meta"]["duplicate_of"] == res.kept[0]["id"]


def test_shingles_cjk_chars_vs_english_words():
    assert len(shingle_hashes("一二三四五六七", ngram=5)) == 3
    assert len(shingle_hashes("one two three four five six", word_ngram=5)) == 2
    # punctuation and case do not matter
    assert np.array_equal(
        shingle_hashes("Hello, World! a b c"), shingle_hashes("hello world a b c")
    )


def test_threshold_is_configurable():
    a = " ".join(f"w{i}" for i in range(60))
    b = " ".join(f"w{i}" for i in range(60) if i % 6)  # drops a sixth of the words
    loose = NearDedup(threshold=0.5, word_ngram=1)  # unigram Jaccard of a and b = 50/60
    strict = NearDedup(threshold=0.95, word_ngram=1)
    assert loose.duplicate_index(loose.signatures_for_texts([a, b]))[1] == 0
    assert strict.duplicate_index(strict.signatures_for_texts([a, b]))[1] == 1


# --- Traditional → Simplified --------------------------------------------------------------------


def test_chinese_convert_t2s():
    pytest.importorskip("opencc", reason="opencc is an optional extra")
    res = run_steps(recs("軟體開發與資料庫"), build_steps({"steps": ["chinese_convert"]}))
    assert res.kept[0]["text"] == "软体开发与资料库"


# --- site chrome found by repetition ---------------------------------------------------------------


def test_site_boilerplate_learns_an_unseen_sites_chrome(tmp_path):
    from zimo.data.formatters.site_boilerplate import SiteBoilerplate

    texts = [t for t in shared_texts(400) if len(t) > 120][:6] or [p * 2 for p in ZH_BODY + EN_BODY]
    chrome_top = "星辰阅读 让知识触手可及"
    chrome_bottom = "本页面由星辰数据科技提供技术支持 服务热线请见官网"
    pages = [
        make_record(
            f"{chrome_top}\n{body}\n{chrome_bottom}",
            source=f"site/page{i}.html",
            offset=0,
            extra_meta={"format": "html"},
        )
        for i, body in enumerate(texts)
    ]
    pages.append(
        make_record(
            f"{chrome_top}\n{chrome_bottom}",
            source="site/empty.html",
            offset=0,
            extra_meta={"format": "html"},
        )
    )
    # the same lines in another folder (another site) with too few pages stay untouched
    other = make_record(
        f"{chrome_top}\n{texts[0]}",
        source="elsewhere/a.html",
        offset=0,
        extra_meta={"format": "html"},
    )
    step = SiteBoilerplate()
    res = run_steps([*pages, other], [step])
    kept = {r["meta"]["source"]: r["text"] for r in res.kept}
    for i, body in enumerate(texts):
        assert kept[f"site/page{i}.html"] == body.strip()
    assert kept["elsewhere/a.html"].startswith(chrome_top)
    assert [r["reject_reason"] for r in res.rejected] == ["only_boilerplate"]
    assert step.stats.changed == len(texts)


def test_site_boilerplate_keeps_repeated_code_lines():
    from zimo.data.formatters.site_boilerplate import SiteBoilerplate

    code = 'fn main() {\n    println!("hi");\n}\nfn main() {\n}\n'
    pages = [
        make_record(
            f"Chapter {i}: a different topic each time, number {i}\n{code}",
            source=f"book/c{i}.md",
            offset=0,
            extra_meta={"format": "md"},
        )
        for i in range(6)
    ]
    res = run_steps(pages, [SiteBoilerplate()])
    assert all("fn main() {" in r["text"] and "}" in r["text"] for r in res.kept)


# --- the step catalogue: every step in the step packages has its spec beside it ---------------


def test_every_step_class_has_a_registered_spec_that_builds_it():
    import importlib
    import inspect
    import pkgutil

    from zimo.data.curate_config import SPECS, CurateConfig
    from zimo.data.pipeline import Step
    from zimo.data.step_spec import STEP_PACKAGES

    modules = [
        importlib.import_module(f"{pkg}.{m.name}")
        for pkg in STEP_PACKAGES
        for m in pkgutil.iter_modules(importlib.import_module(pkg).__path__)
    ]
    steps = {
        cls.name: cls
        for mod in modules
        for _, cls in inspect.getmembers(mod, inspect.isclass)
        if issubclass(cls, Step) and cls.__module__ == mod.__name__ and "name" in vars(cls)
    }
    assert set(steps) == set(SPECS), "a step class without a spec (or a spec without a step)"
    for name, spec in SPECS.items():
        if name == "chinese_convert":  # needs the optional opencc package to build
            continue
        assert isinstance(spec().build(), steps[name])
        # a bare name in zimo.yaml selects this spec
        assert type(CurateConfig.model_validate({"steps": [name]}).steps[0]) is spec
