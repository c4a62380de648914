"""Builders for curation test inputs: a text-layer PDF, news pages with boilerplate, corpora."""

from __future__ import annotations

import json
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def minimal_pdf(lines: list[str]) -> bytes:
    """A one-page PDF whose text layer holds ``lines`` (ASCII), with a correct xref table."""
    body = (
        "BT /F1 12 Tf 72 720 Td 14 TL "
        + " ".join(
            "(" + ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '"
            for ln in lines
        )
        + " ET"
    )
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(body) + body.encode() + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


ZH_BODY = [
    "国家统计局今天发布的数据显示，今年前三季度全国规模以上工业增加值同比增长百分之四点六，"
    "其中制造业增长百分之五点一，高技术制造业增长明显快于整体水平。",
    "分析人士认为，随着一系列稳增长政策持续发力，市场需求逐步恢复，企业生产经营状况有所改善，"
    "但外部环境依然复杂严峻，部分行业仍面临订单不足的问题。",
    "专家建议，下一阶段应继续扩大有效投资，促进消费稳定增长，加快培育新的经济增长点，"
    "同时加强对中小企业的金融支持，帮助其渡过难关。",
]

EN_BODY = [
    "The city council voted on Tuesday to expand the bus network to the northern districts, "
    "adding four new routes that will run every ten minutes during peak hours.",
    "Officials said the plan would be funded by a combination of federal grants and a small "
    "increase in parking fees, and that construction of new stops would begin in the spring.",
    "Residents who spoke at the meeting largely welcomed the decision, although several raised "
    "concerns about noise and traffic on narrow residential streets.",
]


def news_page_zh(body: list[str] | None = None, site: str = "华夏新闻网") -> str:
    """A Chinese news page with navigation, SEO keywords, share bar, related list and footer."""
    paras = "".join(f"<p>{p}</p>" for p in (body or ZH_BODY))
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>前三季度工业增加值增长4.6% - {site}</title>
<meta name="keywords" content="工业增加值,统计局,经济数据"></head><body>
<div class="nav"><a href="/">首页</a> | <a href="/news">新闻</a> | <a href="/finance">财经</a> |
<a href="/sports">体育</a> | <a href="/tech">科技</a></div>
<div class="article"><h1>前三季度工业增加值同比增长4.6%</h1>
<p>关键词：工业增加值 统计局 经济数据 制造业</p>
<p>来源：{site} 2024-10-18 10:23 责任编辑：王小明</p>
{paras}
<p>分享到：微信 微博 QQ空间</p>
<p>【版权声明】本文为{site}原创，未经授权禁止转载。</p>
</div>
<div class="related"><h3>相关阅读</h3><ul><li><a href="/a1">9月份国民经济持续恢复</a></li>
<li><a href="/a2">专家解读三季度经济数据</a></li></ul></div>
<div class="footer">关于我们 | 联系我们 | 广告服务<br>
Copyright © 2003-2024 {site} 版权所有 京ICP备12345678号 违法和不良信息举报电话：010-65892345</div>
</body></html>"""


def news_page_en(body: list[str] | None = None, site: str = "Daily Courier") -> str:
    paras = "".join(f"<p>{p}</p>" for p in (body or EN_BODY))
    return f"""<!DOCTYPE html><html><head><title>Council expands bus network | {site}</title>
</head><body><nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a>
<a href="/opinion">Opinion</a></nav>
<article><h1>Council expands bus network to northern districts</h1>
<p>Tags: transport, council, buses, city news</p>
{paras}
<p>Share this article: Facebook Twitter Email</p>
<p>Related articles: New bike lanes open downtown; Rail fares to rise in January</p>
</article>
<footer>© 2024 {site}. All rights reserved. Privacy Policy | Terms of Use | Contact us</footer>
</body></html>"""


def shared_texts(limit: int = 2000) -> list[str]:
    """Real Chinese and English paragraphs from ../shared/data (empty when it is absent)."""
    texts: list[str] = []
    zh = SHARED / "hc3_zh_qa_dev.jsonl"
    if zh.exists():
        for line in zh.read_text(encoding="utf-8").splitlines():
            texts.append(json.loads(line)["text"])
    for name in ("alpaca_en_1k.json", "alpaca_zh_1k.json"):
        p = SHARED / name
        if p.exists():
            texts.extend(r["output"] for r in json.loads(p.read_text(encoding="utf-8")))
    return [t for t in texts if len(t) >= 20][:limit]
