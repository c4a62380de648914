"""Page curation: chrome, spam, pinyin and quality on messy pages built from real patterns."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from page_fixtures import (
    EN_BODIES,
    ZH_BODIES,
    annotate_pinyin,
    county_footer,
    messy_en_page,
    messy_zh_page,
)
from zimo.data.curate import curate_path
from zimo.data.curate_config import CurateConfig, build_steps
from zimo.data.filters.spam import doc_spam, line_spam
from zimo.data.formatters.page_artifacts import strip_pinyin
from zimo.data.formatters.page_lines import classify, decide
from zimo.data.pipeline import run_steps

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ZH_TITLE = "新能源汽车产业链迎来新一轮投资热潮"
EN_TITLE = "City expands bus network to three new districts"


def _doc(text: str, fmt: str = "txt", rid: str = "p") -> dict:
    return {"id": rid, "text": text, "meta": {"format": fmt, "source": f"{rid}.{fmt}"}}


def _curate(records: list[dict], cfg: CurateConfig | None = None):
    return run_steps(records, build_steps(cfg or CurateConfig()))


def _chrome_lines(page: str, body: list[str], title: str) -> list[str]:
    keep = {p.strip() for p in body} | {title}
    return [ln for ln in page.split("\n") if ln.strip() and ln.strip() not in keep]


@pytest.mark.parametrize("seed", range(6))
def test_messy_zh_pages_lose_their_chrome_and_keep_the_article(seed):
    rng = random.Random(seed)
    body = ZH_BODIES[seed % len(ZH_BODIES)]
    page = messy_zh_page(rng, body, ZH_TITLE, pinyin=seed % 2 == 0)
    res = _curate([_doc(page)])
    assert len(res.kept) == 1, [(r["reject_step"], r["reject_reason"]) for r in res.rejected]
    out = res.kept[0]["text"]
    for para in body:
        assert para in out, para  # every article sentence, pinyin removed
    assert ZH_TITLE in out
    for line in _chrome_lines(strip_pinyin(page)[0], body, ZH_TITLE):
        assert line.strip() not in out, line
    assert "(" not in out and "chǎn" not in out
    assert len(out) < 0.6 * len(page)
    assert res.kept[0]["meta"]["page_cut"]  # what was cut is recorded per record


@pytest.mark.parametrize("seed", range(4))
def test_messy_en_pages_lose_their_chrome_and_keep_the_article(seed):
    rng = random.Random(seed)
    body = EN_BODIES[seed % len(EN_BODIES)]
    page = messy_en_page(rng, body, EN_TITLE)
    res = _curate([_doc(page)])
    assert len(res.kept) == 1
    out = res.kept[0]["text"]
    for para in body:
        assert para in out
    chrome = [
        ln
        for ln in _chrome_lines(page, body, EN_TITLE)
        if not ln.startswith("Published on")  # a date line under the title may stay
    ]
    for line in chrome:
        assert line.strip() not in out, line


def test_county_footer_and_seo_header_are_cut_even_without_a_lexicon_hit():
    rng = random.Random(7)
    body = ZH_BODIES[0]
    seo = "_".join(["某某网", "最新资讯", "免费下载", "高清图片", "热门排行", "在线阅读"])
    page = "\n".join([seo, ZH_TITLE, *body, county_footer(rng, 200)])
    keep, why = decide(page.split("\n"))
    assert keep[0] is False and keep[-1] is False
    assert all(keep[1:-1])
    assert why[-1] is not None


def test_body_is_never_cut_inside_even_its_short_lines_and_lists():
    body = [
        "业内人士认为，随着电池成本下降和充电设施不断完善，新能源汽车的产业链正在向中西部地区转移。",
        "（二）变化是有方向、有重点、有步骤的",
        "主要变化包括：",
        "电池材料",
        "整车制造",
        "充电设施",
        "多地政府也出台了相应的扶持政策，吸引上下游企业集聚发展，推动产业结构优化升级。",
    ]
    page = "\n".join(
        ["首页 | 新闻 | 财经 | 体育 | 娱乐", *body, "Copyright © 2023 某某网 版权所有"]
    )
    res = _curate([_doc(page)])
    assert res.kept[0]["text"] == "\n".join(body)


def test_a_plain_document_without_chrome_is_left_alone():
    text = "\n".join(ZH_BODIES[2] + EN_BODIES[1])
    res = _curate([_doc(text, "md")])
    assert res.kept[0]["text"] == text
    assert "page_cut" not in res.kept[0]["meta"]


def test_table_records_are_not_touched_by_the_page_steps():
    # SMS-like rows (format jsonl) that look like chrome or spam stay exactly as they are.
    rows = [
        "订阅我们的简报，点击订阅，立即领取优惠",
        "澳门赌场百家乐真人娱乐现金网开户送彩金",
        "首页 | 新闻 | 财经 | 体育",
        "你好，明天下午三点开会，记得带上材料。",
    ]
    recs = [_doc(t, "jsonl", f"r{i}") for i, t in enumerate(rows)]
    with_pages = _curate([dict(r, meta=dict(r["meta"])) for r in recs])
    page_steps = {"page_artifacts", "page_lines", "spam", "doc_quality"}
    without = CurateConfig(steps=[s for s in CurateConfig().steps if s.step not in page_steps])
    plain = _curate([dict(r, meta=dict(r["meta"])) for r in recs], without)
    assert [r["text"] for r in with_pages.kept] == [r["text"] for r in plain.kept]
    assert [r["meta"] for r in with_pages.kept] == [r["meta"] for r in plain.kept]
    assert not any(r["reject_step"] in page_steps for r in with_pages.rejected)


def test_spam_page_is_rejected_but_a_page_behind_a_spam_header_keeps_its_article():
    terms = ["百家乐", "真人娱乐", "现金网", "娱乐城", "体育投注", "时时彩", "六合彩", "老虎机"]
    rng = random.Random(3)
    spam = "\n".join(
        f"{rng.choice(terms)}官网{rng.choice(terms)}注册，{rng.choice(terms)}最新地址，{rng.choice(terms)}开户"
        for _ in range(12)
    )
    header = "_".join(terms[:6])
    article = "\n".join([header, ZH_TITLE, *ZH_BODIES[1]])
    res = _curate([_doc(spam, rid="spam"), _doc(article, rid="ok")])
    assert [r["id"] for r in res.kept] == ["ok"]
    assert res.kept[0]["text"].startswith(ZH_TITLE)
    (rej,) = res.rejected
    assert rej["reject_reason"] == "spam:gambling"
    assert rej["text"] == spam  # the rejects keep the page as it came


def test_spam_rules_spare_sentences_that_mention_a_term_once():
    news = "警方近日破获一起利用境外网站组织网络赌博的案件，涉案的百家乐网站已被依法关停。"
    assert line_spam(news) is None
    assert doc_spam(news) is None
    assert line_spam("百家乐_真人娱乐_现金网") == "gambling"
    assert line_spam("free porn videos online") == "adult"
    assert line_spam("The class passed the assessment.") is None  # no substring hits


@pytest.mark.skipif(not (SHARED / "webpages" / "messy_zh").exists(), reason="shared data absent")
def test_real_common_crawl_gambling_spam_lines_are_cut():
    # Real CCNet rows: gambling keyword lines pasted around a news article.
    path = SHARED / "webpages" / "messy_zh" / "chinesewebtext_cc_sample.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    row = next(r for r in rows if "威尼斯人现金直营" in r["raw_content"])
    res = _curate([_doc(row["raw_content"])])
    out = res.kept[0]["text"] if res.kept else ""
    assert "威尼斯人现金直营" not in out
    assert "据江西省应急管理厅消息" in out  # the article's first paragraph stays


def test_pinyin_annotations_are_removed_and_glosses_kept():
    assert strip_pinyin("產(chǎn)業(yè)的發(fā)展")[0] == "產業的發展"
    assert strip_pinyin("我(wo3)爱(ai4)你(ni3)")[0] == "我爱你"
    text = annotate_pinyin("企业和市场都在发展。他来自中国(China)，研究人工智能(AI)。")
    out, n = strip_pinyin(text)
    assert out == "企业和市场都在发展。他来自中国(China)，研究人工智能(AI)。"
    assert n == 3
    assert strip_pinyin("年份(2023)与型号(x)")[0] == "年份(2023)与型号(x)"


def test_quality_score_is_recorded_and_low_scores_and_mojibake_are_rejected():
    good = _doc("\n".join(ZH_BODIES[0]), rid="good")
    tags = _doc("\n".join(["热门标签", "新闻 财经 体育", "汽车 房产 旅游"] * 3), rid="tags")
    # Text decoded with the wrong codec: every tenth character lost to U+FFFD.
    lost = "\n".join(ZH_BODIES[1])
    broken = _doc("".join("\ufffd" if i % 10 == 3 else c for i, c in enumerate(lost)), rid="broken")
    res = _curate([good, tags, broken])
    assert [r["id"] for r in res.kept] == ["good"]
    assert res.kept[0]["meta"]["quality_score"] >= 0.8
    reasons = {r["id"]: r["reject_reason"] for r in res.rejected}
    assert reasons["broken"] == "mojibake"
    assert reasons["tags"] in ("low_quality_score", "only_chrome")


def test_convert_chinese_is_one_config_line():
    pytest.importorskip("opencc", reason="opencc is an optional extra")
    cfg = CurateConfig.model_validate({"convert_chinese": "t2s"})
    names = [s.step for s in cfg.steps]
    assert names[names.index("normalize") + 1] == "chinese_convert"
    res = _curate([_doc("\n".join(["軟體開發與資料庫的發展，讓產業更有效率。"] * 2))], cfg)
    assert "软件开发与数据库" in res.kept[0]["text"] or "软体开发与资料库" in res.kept[0]["text"]


def test_curate_cli_path_reports_a_readable_diff(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    rng = random.Random(11)
    (inp / "portal.txt").write_text(
        messy_zh_page(rng, ZH_BODIES[0], ZH_TITLE, pinyin=True), encoding="utf-8"
    )
    (inp / "blog.txt").write_text(
        messy_zh_page(rng, ZH_BODIES[2], "学做饭的那些日子", pinyin=False), encoding="utf-8"
    )
    (inp / "story.md").write_text(messy_en_page(rng, EN_BODIES[1], EN_TITLE), encoding="utf-8")
    out = tmp_path / "out"
    curate_path(inp, out, workers=1, progress=False)
    kept = pq.read_table(out / "curated.parquet").to_pylist()
    assert len(kept) == 3
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'class="cut"' in html and "版权所有" in html
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    step = next(s for s in report["steps"] if s["name"] == "page_lines")
    assert step["extra"]["lines_removed"] >= 30
    assert any(k.startswith("diff") for k in step["examples"])


def test_html_reader_exposes_trafilatura_precision_and_recall(tmp_path):
    from zimo.data.curate_config import ReadSpec
    from zimo.data.readers.files import read_file

    paras = "".join(f"<p>{p}</p>" for p in EN_BODIES[0])
    html = (
        "<html><head><title>t</title></head><body><nav><a href='/'>Home</a> | "
        "<a href='/w'>World</a></nav><article><h1>" + EN_TITLE + "</h1>" + paras + "</article>"
        "<footer>© 2024 Daily Courier. All rights reserved.</footer></body></html>"
    )
    path = tmp_path / "a.html"
    path.write_text(html, encoding="utf-8")
    texts = {}
    for favor in ("precision", "balanced", "recall"):
        (rec,) = read_file(path, ReadSpec(html_favor=favor), tmp_path)
        texts[favor] = rec["text"]
        assert EN_BODIES[0][0] in rec["text"]
    res = _curate([_doc(texts["recall"], "html")])
    assert "All rights reserved" not in res.kept[0]["text"]
    with pytest.raises(ValueError):
        ReadSpec(html_favor="fast")


def test_unicode_artefacts_zero_width_and_full_width_are_normalised():
    text = "新能源\u200b汽车ＡＢＣ公司发布了全新车型，售价为１２万元。\n" + "\n".join(ZH_BODIES[1])
    res = _curate([_doc(text)])
    out = res.kept[0]["text"]
    assert "\u200b" not in out and "ABC" in out and "12" in out and "，" in out
    assert re.search("[Ａ-Ｚ０-９]", out) is None


def test_an_echoed_caption_loses_its_second_copy_but_repeated_code_stays():
    caption = "5月19日，阿比纳德尔在竞选总部发表胜选演讲。新华社记者 李梦馨 摄"
    code = "-e ENV=dev \\"
    b = ZH_BODIES[0]
    lines = [ZH_TITLE, b[0], caption, b[1], code, code, caption, b[2], b[3]]
    keep, why = decide(lines)
    assert keep[2] and not keep[6] and why[6] == "repeated"
    assert keep[4] and keep[5]
    assert all(keep[i] for i in (0, 1, 3, 7, 8))


# --- articles the line and quality rules must not lose ------------------------------------------

HINDI = [
    "भारत की राजधानी नई दिल्ली अपने इतिहास, संस्कृति और भोजन के लिए जानी जाती है।",
    "हर साल लाखों पर्यटक लाल किला, कुतुब मीनार और इंडिया गेट देखने आते हैं।",
    "सर्दियों में शहर का मौसम सुहावना रहता है, जबकि गर्मियों में तापमान बहुत बढ़ जाता है।",
    "दिल्ली मेट्रो ने शहर के भीतर यात्रा को तेज़, सस्ता और सुरक्षित बना दिया है।",
    "पुरानी दिल्ली की गलियों में मिलने वाले पराठे और जलेबी दूर-दूर तक मशहूर हैं।",
]
URDU = [
    "پاکستان نے دوسرے ٹی ٹوئنٹی میچ میں آئرلینڈ کو سات وکٹوں سے شکست دے دی۔",
    "فخر زمان اور محمد رضوان نے شاندار بیٹنگ کی اور ٹیم کو آسان فتح دلائی۔",
    "اس کامیابی کے بعد تین میچوں کی سیریز ایک ایک سے برابر ہو گئی ہے۔",
]


def _quality(text: str, fmt: str = "txt"):
    from zimo.data.filters.quality import QualityFilter

    return QualityFilter().filter(_doc(text, fmt))


def test_quality_keeps_hindi_prose_news_that_restates_its_lead_and_repeated_command_flags():
    # Devanagari vowel signs are combining marks: without them every word fell apart into
    # single consonants that "repeated" all over the page.
    assert _quality("\n".join(HINDI)) is True
    # A caption restating the lead: said twice is writing, not a template.
    lead = "多米尼加现任总统、现代革命党候选人阿比纳德尔19日晚在竞选总部宣布，他在当天举行的总统选举首轮投票中获胜，成功连任。"
    caption = (
        "5月19日，在多米尼加首都圣多明各，阿比纳德尔在竞选总部发表胜选演讲。新华社记者 李梦馨 摄"
    )
    news = "\n".join(
        [
            "现总统阿比纳德尔宣布赢得多米尼加总统选举",
            lead,
            caption,
            caption.replace("尔在", "尔（中）在"),
        ]
    )
    assert _quality(news) is True
    # The same text three times over is a template; as a table row (SMS, labelled text) the
    # rules are unchanged and the doubled text is still refused.
    assert _quality("\n".join([lead, caption] * 3))[0] is False
    assert _quality(news, "jsonl") == (False, "repeated_ngrams")
    flags = [
        "--init \\",
        "-e ENV=dev \\",
        "-v /etc/localtime:/etc/localtime:ro \\",
        "-p 8080:8080 \\",
    ]
    b0, b1 = ZH_BODIES[0], ZH_BODIES[1]
    steps = [
        "部署配置服务：", *b0[:2], "docker run -d --name config \\", *flags,
        "部署管理服务：", *b0[2:], "docker run -d --name admin \\", *flags,
        "部署门户：", *b1, "docker run -d --name portal \\", *flags,
    ]  # fmt: skip
    assert _quality("\n".join(steps), "md") is True
    assert _quality("\n".join(steps), "jsonl") == (False, "repeated_lines")


def test_the_title_above_the_date_source_and_share_bar_is_kept():
    body = ZH_BODIES[0]
    menu = ["首页", "新闻", "财经", "体育", "国际新闻", ">", "正文"]
    furniture = [
        "2024-05-16 17:02",
        "来源：新华社",
        "举报",
        "缩小字体",
        "放大字体",
        "收藏",
        "微博",
        "3,930",
    ]
    page = "\n".join(
        [*menu, ZH_TITLE, *furniture, "推动产业链向中西部转移", *body, "责任编辑：王某"]
    )
    keep, why = decide(page.split("\n"))
    lines = page.split("\n")
    kept = [ln for ln, k in zip(lines, keep, strict=True) if k]
    assert kept == [ZH_TITLE, "推动产业链向中西部转移", *body]
    assert why[lines.index("2024-05-16 17:02")] == "header"


def test_a_ranking_and_a_feed_of_teasers_do_not_outweigh_a_one_paragraph_article():
    article = (
        "北京商报讯（记者 张某）5月20日，中国人民银行授权全国银行间同业拆借中心公布，1年期贷款市场"
        "报价利率为3.45%，5年期以上为3.95%，均与上月持平，这也是该利率连续第三个月保持不变，"
        "市场人士认为这符合此前的普遍预期。"
    )
    ranking = ["热门排行"] + [f"{i}{h}" for i, h in enumerate(ZH_BODIES[1] + ZH_BODIES[2], 1)][:8]
    ranking = [ranking[0]] + [r.rstrip("。") for r in ranking[1:]]
    feed = []
    for i, para in enumerate(ZH_BODIES[2][:3]):
        feed += [f"相关新闻标题之{i}", para[:40] + "…", f"新华网·{i + 2}小时前"]
    page = "\n".join(["首页 | 新闻 | 财经", ZH_TITLE, "2024-05-20 09:47", article, *ranking, *feed])
    lines = page.split("\n")
    keep, _ = decide(lines)
    kept = [ln for ln, k in zip(lines, keep, strict=True) if k]
    assert kept == [ZH_TITLE, article]
    # Months and places are quantities, not rank badges: an article's own headings stay.
    months = ["1月销量回升", "2月销量持平", "3月销量创新高"]
    keep, _ = decide([*ZH_BODIES[0][:2], *months, *ZH_BODIES[0][2:]])
    assert all(keep)


def test_glued_footnotes_a_trailing_cut_paragraph_and_command_lines_stay():
    poem = ["我有所念人，隔在远远乡。", "我有所感事，结在深深肠。", "乡远去不得，无日不瞻望。"]
    notes = [
        "注释",
        "1乡：家乡。",
        "2瞻望：往远处或高处看，敬仰并寄以希望。",
        "3夕：日落的时候。无夕：日日夜夜。",
    ]
    tail = ZH_BODIES[1][0][:-1] + "..."
    page = [*poem, *ZH_BODIES[1], *notes, ZH_BODIES[2][0], tail, "Copyright © 2017 某某诗词网"]
    keep, _ = decide(page)
    assert all(keep[:-1]) and not keep[-1]
    code = [
        "部署时把数据目录挂载到容器里，并给它与宿主机相同的用户编号，否则容器启动后无法写入数据。",
        "-e SPRING_DATASOURCE_USERNAME=apollo \\",
        "-R 1001:1001 /Users/dev/home/data/docker/bitnami",
        "--config.file=/etc/prometheus/alertmanager/alertmanager.yml \\",
        "启动以后用下面的命令检查服务是否正常，如果返回了配置内容，说明部署已经完成了。",
    ]
    keep, why = decide(code, extracted=True)
    assert all(keep), why


def test_lines_in_scripts_written_with_spaces_are_words_not_tiny_chrome():
    # Urdu (Arabic script, ۔ ends a sentence) extracted from HTML: every line is article.
    lines = [*URDU, "Ravi Ki Kahani is a Special Articles article on the site."]
    keep, why = decide(lines, extracted=True)
    assert all(keep), why
    keep, why = decide(["ABOUT US", *URDU, "© 1997-2024, UrduPoint Network"])
    assert keep == [False, True, True, True, False]


def test_a_comment_section_after_the_article_goes_however_much_prose_it_holds():
    comments = [
        "34 Comments",
        "thelastchargersfan says:",
        "November 19, 2019 at 6:34 am",
        "It is a good thing that the team has no fans left, because this season has been a "
        "dumpster fire from the very first week and nobody in charge seems to care about it.",
        "joetoronto says:",
        "November 19, 2019 at 6:40 am",
        "The coach said the same thing last year and the year before that, and the results have "
        "been exactly the same, so I do not see why anyone should believe him this time around.",
        "Leave a Reply",
    ]
    page = "\n".join(["Home | Sports | Teams", EN_TITLE, *EN_BODIES[0], *comments])
    lines = page.split("\n")
    keep, why = decide(lines)
    kept = [ln for ln, k in zip(lines, keep, strict=True) if k]
    assert kept == [EN_TITLE, *EN_BODIES[0]], why
    assert why[lines.index("34 Comments")] == "comments"


def test_a_long_list_of_the_articles_own_between_its_paragraphs_stays():
    places = "东湖 西山 南塘 北港 青城 白塔 红岩 黄坡 金沙 银滩 玉泉 石门 松林 竹海 梅园".split()
    items = [f"第{n}站{p}景区，游客凭本人证件可享受门票半价优惠" for n in "一二三" for p in places]
    page = [ZH_TITLE, *ZH_BODIES[0][:2], *items, *ZH_BODIES[1]]
    keep, why = decide(page)
    assert all(keep), [ln for ln, k in zip(page, keep, strict=True) if not k][:3]


def test_a_tutorial_whose_commands_repeat_and_a_list_item_with_an_inner_enumeration_stay():
    flags = ["--init \\", "-e ENV=dev \\", "-v /etc/localtime:/etc/localtime:ro \\", "-p 80:80 \\"]
    cmds = [[f"docker run -d --name svc{i} \\", *flags, f"apollo/svc{i}:2.0.1"] for i in range(4)]
    text = "\n".join([ZH_BODIES[0][0], *cmds[0], *cmds[1], ZH_BODIES[0][1], *cmds[2], *cmds[3]])
    assert _quality(text, "md") is True
    item = "27、上海植物园（南区温室群、北区温室群、盆景园、兰室）"
    keep, why = decide(
        [*ZH_BODIES[0][:2], "26、上海动物园", item, *ZH_BODIES[0][2:]], extracted=True
    )
    assert all(keep), why


def test_a_caption_between_two_kept_paragraphs_comes_back_and_a_sidebar_caption_does_not(
    tmp_path,
):
    from zimo.data.curate_config import ReadSpec
    from zimo.data.readers.files import read_file

    body = ZH_BODIES[0] + ZH_BODIES[1]
    caption = "2019年10月底的市民服务中心，该区域为新区成立后的第一处地标。"
    sidebar = "编辑推荐：本周最受欢迎的十张摄影作品，点击大图查看。"
    html = (
        "<html><head><title>t</title></head><body><nav><a href='/'>首页</a> | "
        "<a href='/n'>新闻</a></nav><article><h1>" + ZH_TITLE + "</h1>"
        f"<p>{body[0]}</p><figure><img src='a.jpg'><figcaption>{caption}</figcaption></figure>"
        + "".join(f"<p>{p}</p>" for p in body[1:])
        + "</article><aside><div class='image-caption'>"
        + sidebar
        + "</div></aside><footer>版权所有 © 2024</footer></body></html>"
    )
    path = tmp_path / "a.html"
    path.write_text(html, encoding="utf-8")
    (rec,) = read_file(path, ReadSpec(), tmp_path)
    lines = rec["text"].split("\n")
    assert caption in lines and lines.index(caption) == lines.index(body[0]) + 1
    assert sidebar not in rec["text"]
    (rec,) = read_file(path, ReadSpec(html_captions=False), tmp_path)
    assert caption not in rec["text"]  # the setting is honoured: trafilatura alone drops it


def test_datelines_between_title_and_text_go_and_the_title_stays():
    for dateline in (
        "Nov. 19, 2019 8:03 am ET",
        "By Tess Bonn - 11/19/19 06:56 AM EST",
        "Reuters November 18, 2019 11:03 PM",
    ):
        page = ["Home | World | Sports | Business", EN_TITLE, dateline, *EN_BODIES[0]]
        keep, why = decide(page)
        kept = [ln for ln, k in zip(page, keep, strict=True) if k]
        assert kept == [EN_TITLE, *EN_BODIES[0]], (dateline, why)


def test_a_run_of_bare_labels_inside_the_body_is_a_menu_but_an_articles_lists_stay():
    menu = ["Share", "Facebook", "Twitter", "LinkedIn", "Email", "Print"]
    page = [EN_TITLE, *EN_BODIES[0][:2], *menu, *EN_BODIES[0][2:], *EN_BODIES[1]]
    keep, why = decide(page)
    kept = [ln for ln, k in zip(page, keep, strict=True) if k]
    assert kept == [EN_TITLE, *EN_BODIES[0], *EN_BODIES[1]], why
    # Marked items, label-value pairs and four-word items are the article's own.
    for items in (
        ["1. Flour", "2. Sugar", "3. Butter", "4. Eggs", "5. Milk"],
        [
            "成人票原价：60元",
            "儿童票原价：30元",
            "老人票原价：30元",
            "学生票原价：20元",
            "团体票：50元",
        ],
        [
            "Windows Server Datacenter edition",
            "Windows Server Standard edition",
            "Windows Server Essentials edition",
            "Windows Enterprise long term",
            "Windows Education and Pro",
        ],
    ):
        page = [EN_TITLE, *EN_BODIES[0][:2], *items, *EN_BODIES[0][2:]]
        keep, why = decide(page)
        assert all(keep), (items, why)


def test_the_body_ends_at_a_reference_list():
    refs = [
        f"^ 刘{n}. 新区{n}号文件发布，相关规划同步公开. 新华网. 2023-12-0{n} [2023-12-1{n}]. "
        "（原始内容存档于2023-12-11）."
        for n in range(1, 7)
    ]
    page = [ZH_TITLE, *ZH_BODIES[0], "参考资料[编辑]", *refs, *ZH_BODIES[1][:1]]
    keep, why = decide(page)
    kept = [ln for ln, k in zip(page, keep, strict=True) if k]
    assert kept == [ZH_TITLE, *ZH_BODIES[0]], why
    sources = ["Sources", "Smith, Anne. “Five takeaways from the hearing.” ABC News. 15 Nov 2019."]
    page = [EN_TITLE, *EN_BODIES[0], *sources]
    keep, why = decide(page)
    assert keep == [True] * (1 + len(EN_BODIES[0])) + [False, False], why


def _kept(page: list[str]) -> tuple[list[str], list[str | None]]:
    keep, why = decide(page)
    return [ln for ln, k in zip(page, keep, strict=True) if k], why


def test_a_cookie_notice_longer_than_the_article_is_not_the_article():
    notice = [
        "Cookie Notice",
        "This Cookie Notice explains how we and our affiliates use cookies and similar "
        "technologies on our websites, apps and other services, and the choices you have.",
        "Like many companies, we use cookies (small text files placed on your computer or "
        "device) and other tracking technologies to recognise your browser and remember you.",
        "First-party cookies are placed by us and third-party cookies are placed by our "
        "advertising partners, who may use them to show you ads on other websites.",
        "You may be able to disable and manage some cookies through your browser settings, "
        "but some parts of the services may not work as intended if you do.",
    ] * 2
    page = ["Home | World | Sports", EN_TITLE, *EN_BODIES[0], "About | Contact | Help", *notice]
    kept, why = _kept(page)
    assert kept == [EN_TITLE, *EN_BODIES[0]], why
    # A recipe's cookies are not a notice.
    recipe = [
        "These chocolate chip cookies are soft in the middle and crisp at the edges, and the "
        "dough keeps in the fridge for up to three days before you bake it.",
        "Bake the cookies for twelve minutes, until the edges turn golden, and let them cool "
        "on the tray for five minutes before you move them to a rack.",
    ]
    kept, why = _kept(["Home | Recipes | Baking", "Chewy Chocolate Chip Cookies", *recipe])
    assert kept == ["Chewy Chocolate Chip Cookies", *recipe], why


def test_a_title_case_headline_feed_after_the_article_goes_and_the_title_stays():
    feed = [
        "Most Read",
        "Hospitals Launch New Appointment System On Monday: Consent Now Required!",
        "Voters Head To The Polls As Turnout Hits Record High In Key Districts",
        "Why Everyone Is Talking About The New Budget Plan?",
        "Champions Celebrate Historic Win With Fans In The City Centre!",
        "Ten Decoration Ideas For Your Baby's Room Before The Big Day",
    ]
    title = "City Expands Bus Network To Three New Districts"
    page = ["Home | World | Sports", title, *EN_BODIES[0], *feed]
    kept, why = _kept(page)
    assert kept == [title, *EN_BODIES[0]], why


def test_a_newsletter_sign_up_box_inside_the_text_is_cut_and_the_text_stays():
    for signup in (
        [
            "Add Startups Weekly to your subscription choices",
            "By submitting your email, you agree to our Terms and Privacy Notice.",
        ],
        ["Sign up for Mashable's weekly Light Speed newsletter.", "Thanks for signing up!"],
        ["Explore all newsletters", "Sign up"],
    ):
        page = [EN_TITLE, *EN_BODIES[0][:2], *signup, *EN_BODIES[0][2:]]
        kept, why = _kept(page)
        assert kept == [EN_TITLE, *EN_BODIES[0]], (signup, why)
    # A sentence that mentions a newsletter is not a sign-up box.
    story = [
        *EN_BODIES[1][:2],
        "The council said it would explain the new routes in its monthly newsletter, which is "
        "posted to every household in the three districts.",
        *EN_BODIES[1][2:],
    ]
    kept, why = _kept([EN_TITLE, *story])
    assert kept == [EN_TITLE, *story], why


def test_relative_times_are_datelines_in_chinese_too():
    for dateline in ("新华网·2 小時前", "3小时前", "法新社·2 天前", "Reuters · 3 hours ago"):
        info = classify([dateline])[0]
        assert info is not None and info.reason == "dateline", dateline
    # A sentence about the past is not a dateline.
    info = classify(["三天前，记者来到这座小镇。"])[0]
    assert info is not None and info.reason != "dateline"


_ZH_MENU = "首页 新闻 财经 体育 娱乐 科技 汽车 房产 旅游 健康 视频 专题 评论".split()
_ZH_HOT = [
    "热点搜索",
    "东部战区开展联合演习",
    "地铁辟谣扶梯事故",
    "储能超级工厂开工",
    "楼市新政落地",
    "刮刮乐大面积缺货",
    "版权声明",
]


def test_a_price_list_of_fields_and_numbered_items_between_short_notes_stays():
    # A holiday notice: the lead, then sixty attractions, each a numbered name and its fields
    # (price, phone: repeated labels and digits), some with a note. None of it is chrome.
    rng = random.Random(3)
    names = [a + b for a in "东南西北青白红黄金银" for b in ("山公园", "湖景区", "古镇", "博物馆")]
    items = []
    for n, name in enumerate(names[:24], 1):
        items += [f"{n}、上海{name}", f"成人票原价：{rng.randint(2, 30) * 10}元"]
        if n % 3 == 0:
            items.append(f"儿童票原价：{rng.randint(1, 9) * 10}元")
        items.append(f"游客咨询电话：5{rng.randint(1000000, 9999999)}")
        if n % 4 == 0:
            items.append(f"备注：仅限成人票实行半价优惠，乘{n}路公交可直达景区门口。")
    lead = (
        "本报讯 5月19日是第14个中国旅游日，作为每年中国旅游日的重要内容，本市文化和旅游局动员、"
        "组织有关景区开展门票半价优惠活动，具体名单如下。"
    )
    tail = "特别提示：景区门票半价优惠活动仅限5月17日至19日，游客应提前预约，错峰出行。"
    page = [*_ZH_MENU, ZH_TITLE, "2024-05-13 12:03:10", lead, "门票半价优惠景点", *items, tail]
    page += _ZH_HOT
    kept, why = _kept(page)
    assert kept == [ZH_TITLE, lead, "门票半价优惠景点", *items, tail], why


def test_a_feed_of_dated_whole_sentence_teasers_does_not_outweigh_a_short_article():
    article = [
        "（本报记者罗马19日电）网球好手今天以6比4、7比5击败对手，拿下他受伤以来最重要的冠军。",
        "世界排名第5的他，今天是继2017年后再度在这项赛事封王，为下周的大满贯做好暖身。",
        "他今天在赛后说，「这座城市对我来说意义非凡。」",
    ]
    feed = ["其他人也在看"]
    for i, body in enumerate([*ZH_BODIES[0], *ZH_BODIES[1]]):
        # Each teaser is a whole paragraph of another story under its source and time.
        feed += [f"新华网·{i + 2} 小时前", f"其他新闻标题之{i}", body + body]
    page = [*_ZH_MENU, ZH_TITLE, "2024年5月20日 下午2:05", *article, *feed, *_ZH_HOT]
    kept, why = _kept(page)
    assert kept == [ZH_TITLE, *article], why
    # Teasers a site cut off mid-word count for little even without their time stamps.
    clipped = ["更多阅读", "广告", "分享到微博"]
    for i, body in enumerate([*ZH_BODIES[0], *ZH_BODIES[1]]):
        clipped += [f"其他新闻标题之{i}", (body + body)[:70], "查看全文"]
    kept, why = _kept([*_ZH_MENU, ZH_TITLE, *article, *clipped, *_ZH_HOT])
    assert kept == [ZH_TITLE, *article], why


def test_a_wiki_lead_above_its_fact_box_and_contents_stays_and_the_fact_box_goes():
    lead = (
        "河北雄安高新技术产业开发区，隶属河北省雄安新区，简称雄安高新区，为省级高新技术产业"
        "开发区。规划用地总面积952.7463公顷，以核心区南北为两翼，布局五大产业园区。 [1] [5]"
    )
    facts = ["中文名", "河北雄安高新技术产业开发区", "所属地区", "河北省雄安新区"]
    facts += ["批准时间", "2023年12月27日", "核准面积", "952.7463公顷", "启动时间", "2024年5月9日"]
    toc = ["目录", "1历史沿革", "2区域规划", "3体系格局"]
    sections = [
        "历史沿革",
        "播报",
        "编辑",
        "2023年12月，河北省政府批复设立省级河北雄安高新技术产业开发区。 [2] [5]",
        "2024年5月9日，雄安高新区正式揭牌启动，标志着雄安高新区管委会组织机构正式运行。 [3-4]",
        "区域规划",
        "播报",
        "编辑",
        "雄安高新区以核心区南北为两翼，布局空天园、信息园、生物技术园、新材料园、未来科技园等"
        "五大产业园区，围绕卫星互联网、北斗等产业，打造站产城融合的高新技术产业开发区。",
        "体系格局",
        "播报",
        "编辑",
        "雄安高新区将着力构建“一核两翼三支撑”的空间格局，以雄安高铁站为中心，率先开发建设"
        "核心区，发挥交通枢纽带动优势，更好支撑保障高新技术产业开发区的产业发展。",
    ]
    refs = ["参考资料", "1", "规划用地超952公顷．金台资讯 [引用日期2024-01-12]"]
    page = ["登录", "注册", "首页", "雄安高新区", lead, *facts, *toc, *sections, *refs]
    kept, why = _kept(page)
    assert lead in kept and all(s in kept for s in sections if len(s) > 20), why
    assert not any(f in kept for f in facts[2:]), why
    # A sentence followed by its citation marks ends like a sentence.
    info = classify(["2023年12月，河北省政府批复设立省级高新区。 [2] [5]"])[0]
    assert info is not None and info.ends


def test_a_tutorial_split_by_long_scripts_keeps_every_paragraph():
    script = ["#!/bin/bash", "# 使用which命令判断命令是否存在", "if which docker >/dev/null; then"]
    script += ['echo "use docker"', "else", 'echo "use podman"', "fi"]
    for svc in ("zookeeper", "kafka", "grafana", "prometheus", "alertmanager", "exporter"):
        script += [
            f"docker stop {svc} && docker rm {svc}",
            f"# https://hub.docker.com/r/bitnami/{svc}",
            f"docker run -d --name {svc} \\",
            "--network=common_container_network \\",
            "-e TZ=CST-8 \\",
            f"bitnami/{svc}:3.4",
            "sleep 5s",
        ]
    paras = [
        "前言：本文会以多个实际的线上例子，分享自己对于Docker和Podman的一点使用经验及踩过的坑，"
        "希望对读者有一点帮助。",
        "注意bitnami的镜像都是rootless，在mac下挂载目录会报没有权限，建议直接放弃挂载，"
        "linux可以正常挂载。",
        "多个容器可以在同一个pod，由pod统一管理端口映射，pod里面的容器共享网络，"
        "容器之间可以直接通过localhost加端口来互相访问。",
    ]
    page = [*_ZH_MENU, "Docker和Podman的使用经验", paras[0], "一、部署kafka", *script]
    page += [paras[1], "二、部署监控", *script, paras[2], "暂未发现其必要性，待补充。"]
    page += ["粉丝 - 1", "关注 - 0", "+加关注", "posted @ 2024-05-09 14:45", *_ZH_HOT]
    kept, why = _kept(page)
    assert all(p in kept for p in paras) and "暂未发现其必要性，待补充。" in kept, why
    assert "docker run -d --name kafka \\" in kept and "+加关注" not in kept


def test_posted_and_updated_lines_are_furniture_not_listing_fields():
    # "Posted: 18 Nov 2019 8:11 pm" has a label, a colon and a figure like a price field, but
    # it is a dateline: it still parts the article from a legal notice above it.
    notice = (
        "©1996-2019 Example Media, LLC. This site and its logo are registered trademarks of "
        "Example Media and may only be used with its written permission."
    )
    page = [
        "Home | Reviews | Deals",
        notice,
        "Sign In",
        EN_TITLE,
        "By Jane Smith, Staff",
        "Updated: 18 Nov 2019 9:38 pm",
        "Posted: 18 Nov 2019 8:11 pm",
        *EN_BODIES[0],
    ]
    kept, why = _kept(page)
    assert notice not in kept and kept[-4:] == EN_BODIES[0], why


def test_pictures_with_their_credit_and_caption_do_not_split_the_article():
    # A news page's pictures: a credit, the agency (repeated), a caption label and the caption
    # between two paragraphs. Three such lines used to read as a run of chrome.
    def picture(caption: str) -> list[str]:
        return ["Image copyright", "Getty Images", "Image caption", caption]

    body = EN_BODIES[0] + EN_BODIES[1]
    page = ["Home | News | Sport", EN_TITLE, body[0], body[1]]
    page += picture("The new routes will run through three districts")
    page += body[2:5] + picture("A bus stop in the city centre") + body[5:]
    page += ["Related Topics", "Buses", "City council", "© 2024 Example News"]
    kept, why = _kept(page)
    assert all(p in kept for p in body), why
    assert "Image copyright" not in kept and "Image caption" not in kept, why
    zh = ["首页 | 新闻 | 财经", ZH_TITLE, *ZH_BODIES[0][:2]]
    zh += ["图片来源：视觉中国", "视觉中国", "图片说明", "工人在生产线上装配新能源汽车"]
    zh += [*ZH_BODIES[0][2:], "图片来源：视觉中国", "视觉中国", "图片说明", "新建的停车场"]
    zh += [*ZH_BODIES[1], "相关阅读", "锂价回落 电池企业利润承压", "版权所有 © 某某网"]
    kept, why = _kept(zh)
    assert all(p in kept for p in ZH_BODIES[0] + ZH_BODIES[1]), why
    assert "图片来源：视觉中国" not in kept, why
