"""Messy pages built from the patterns of real crawled pages (saved as text, with their chrome).

Each chrome kind has several variants and the generator mixes them at random positions, so a
test does not pass by matching one fixed layout: SEO keyword headers joined by underscores,
navigation menus and breadcrumbs, bylines, subscription banners, related-content and
hot-column lists, sponsor lines, "about us | contact us | advertising" footers, copyright
lines, and a footer of some two hundred county names separated by ``| ``. The article bodies
are written in the register of real news and blog paragraphs; ``annotate_pinyin`` adds the
pinyin after words the way reading-aid pages do.
"""

from __future__ import annotations

import random

ZH_BODIES = [
    [
        "记者从工业和信息化部获悉，今年前四个月，我国新能源汽车产销分别完成229.1万辆和222.2万辆，同比分别增长42.8%和42.8%，市场占有率达到27%。",
        "业内人士认为，随着电池成本下降和充电设施不断完善，新能源汽车的产业链正在向中西部地区转移，一批配套企业在当地落户。",
        "多地政府也出台了相应的扶持政策，吸引上下游企业集聚发展，推动产业结构优化升级。",
        "专家提醒，企业在扩大产能的同时，也要关注市场需求的变化，避免出现新的产能过剩。",
    ],
    [
        "今年夏天，这座位于江南水乡的小镇迎来了大批游客。据当地文旅部门统计，七月以来接待游客超过六十万人次。",
        "为了缓解停车难的问题，镇上新建了三座停车场，并开通了连接高铁站的旅游专线。",
        "不少游客表示，这里的老街保存得很好，石板路和木结构的老房子让人感觉仿佛回到了过去。",
        "当地负责人介绍，下一步将继续完善公共服务设施，让游客玩得更舒心。",
    ],
    [
        "我第一次学做饭是在大学毕业那年，租住的小屋里只有一个电磁炉和一口小锅。",
        "最开始连鸡蛋都炒不好，不是糊了就是太咸，后来慢慢摸索，才知道火候和调料的顺序有多重要。",
        "现在回想起来，那段手忙脚乱的日子反而最让人怀念，因为每一道菜都是自己一点点学会的。",
        "如果你也刚开始学做饭，不妨从最简单的家常菜做起，多练几次就会找到感觉。",
    ],
]

EN_BODIES = [
    [
        "The city council voted on Tuesday to expand the bus network into three new districts, a plan that officials say will cut commuting times for about 40,000 residents.",
        "Construction of the new routes is expected to begin next spring, and the first buses should be running before the end of the year.",
        "Some residents have raised concerns about the cost of the project, which will be paid for in part by a small increase in parking fees.",
        "The mayor said the council would publish a detailed budget for the expansion in the coming weeks.",
    ],
    [
        "I started running three years ago, mostly because I wanted an excuse to spend more time outside after long days at the office.",
        "At first I could barely finish two kilometres without stopping, but I kept going out three times a week and the distance slowly grew.",
        "What surprised me most was how much the habit changed the rest of my day: I slept better, ate better and worried less.",
        "If you are thinking about starting, my advice is simple: go slowly, and do not compare yourself with anyone else.",
    ],
]

_PINYIN = {
    "产业": "chǎn yè",
    "企业": "qǐ yè",
    "市场": "shì chǎng",
    "发展": "fā zhǎn",
    "游客": "yóu kè",
    "公共": "gōng gòng",
    "简单": "jiǎn dān",
    "鸡蛋": "jī dàn",
}

_PLACE_A = "东西南北上下新安平和永长宁兴华丰宝海江河山清明光泰德广福"
_PLACE_B = "城阳山江河水林原宁安州乡川坪溪湖桥门台"
_PLACE_S = ["县", "区", "市", "旗"]


def annotate_pinyin(text: str) -> str:
    """Put the pinyin in brackets after known words, as reading-aid pages print it."""
    for word, py in _PINYIN.items():
        text = text.replace(word, f"{word}({py})")
    return text


def county_footer(rng: random.Random, n: int = 200) -> str:
    names = [rng.choice(_PLACE_A) + rng.choice(_PLACE_B) + rng.choice(_PLACE_S) for _ in range(n)]
    return "| ".join(names)


def zh_chrome(rng: random.Random, site: str) -> tuple[list[str], list[str]]:
    """(header lines, footer lines) of a Chinese page."""
    seo = rng.choice(
        [
            "_".join(["成人电影", "黄色网站", "免费A片", "色情视频", "激情小说", "在线观看"]),
            "_".join(["澳门赌场", "百家乐", "真人娱乐", "现金网", "娱乐城开户", "体育投注"]),
            "_".join(["日本一本道", "无码高清", "国产精品", "亚洲色图", "午夜福利", "在线播放"]),
        ]
    )
    nav = rng.choice(
        [
            "首页 | 新闻 | 财经 | 体育 | 娱乐 | 科技 | 汽车 | 房产",
            "网站首页 > 新闻中心 > 国内新闻 > 正文",
            "首页 · 要闻 · 社会 · 国际 · 军事 · 图片",
        ]
    )
    byline = rng.choice(
        [
            f"2023-05-12 10:21 来源：{site}",
            "发布时间：2024年3月8日 作者：李明",
            f"来源：{site}  编辑：王小红  2022-11-03",
        ]
    )
    banner = rng.choice(
        [
            "订阅我们的简报，每天早上获取最新资讯，点击订阅",
            "扫码关注公众号，获取更多精彩内容",
            "下载客户端，阅读体验更流畅，立即下载",
        ]
    )
    related = rng.choice(["相关内容", "相关阅读", "猜你喜欢", "热门推荐"])
    headlines = [
        "上海车展开幕 多家车企发布新车型",
        "锂价回落 电池企业利润承压",
        "暑期旅游市场持续升温",
        "多地出台措施促进消费",
    ]
    hot = rng.choice(["热门栏目", "热门专题", "精彩推荐"])
    footer = [
        rng.choice(
            ["本文由某某银行赞助播出", "赞助商：某某科技有限公司", "广告：某某品牌独家冠名"]
        ),
        related,
        *rng.sample(headlines, 3),
        hot,
        rng.choice(["财经 | 股票 | 基金 | 理财", "汽车 | 房产 | 家居 | 旅游 | 健康"]),
        rng.choice(
            [
                "关于我们 | 联系我们 | 广告服务 | 网站地图 | 法律声明",
                "关于我们 - 联系我们 - 广告服务 - 招聘信息 - 意见反馈",
            ]
        ),
        county_footer(rng),
        rng.choice(
            [
                f"Copyright © 2003-2023 {site} 版权所有 京ICP备12345678号",
                f"版权所有 © {site} 未经授权禁止转载 沪ICP备09012345号-1",
            ]
        ),
    ]
    header = [seo, nav, "{title}", byline, banner]
    return header, footer


def messy_zh_page(rng: random.Random, body: list[str], title: str, pinyin: bool) -> str:
    site = rng.choice(["华夏新闻网", "东方财经", "江南旅游网", "生活家"])
    header, footer = zh_chrome(rng, site)
    paras = [annotate_pinyin(p) for p in body] if pinyin else list(body)
    lines = [ln.replace("{title}", title) for ln in header] + paras + footer
    return "\n".join(lines)


def messy_en_page(rng: random.Random, body: list[str], title: str) -> str:
    site = rng.choice(["Daily Courier", "Valley Herald", "The Morning Post"])
    header = [
        rng.choice(["Skip to main content", "Skip to content"]),
        rng.choice(
            ["Home | World | Business | Tech | Sport | Opinion", "News > Local > City Hall"]
        ),
        title,
        rng.choice(["By Jane Smith | March 3, 2024", "Published on: March 3, 2024"]),
        rng.choice(
            [
                "Subscribe to our newsletter for the latest updates",
                "Sign up for our free newsletter and get the news in your inbox",
            ]
        ),
    ]
    footer = [
        rng.choice(["Related stories", "You may also like", "Most popular"]),
        "Council approves new budget",
        "Local team wins championship",
        "Share on Facebook Twitter Email",
        "About us | Contact us | Advertise | Careers",
        rng.choice(
            [
                f"© 2024 {site}. All rights reserved.",
                f"Copyright 2024 {site} | Privacy Policy | Terms of Use",
            ]
        ),
    ]
    return "\n".join(header + list(body) + footer)
