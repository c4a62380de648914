"""PII redaction: Chinese formats with their checksums, and the usual suspects."""

from __future__ import annotations

import pytest

from zimo.data.formatters.pii import RedactPii, luhn_ok, redact, valid_cn_id
from zimo.data.pipeline import run_steps
from zimo.records import make_record

ALL = ["email", "url", "ip", "cn_id", "bank_card", "cn_mobile", "cn_landline", "phone"]


def _id_with_check(body17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return (
        body17 + "10X98765432"[sum(int(d) * w for d, w in zip(body17, weights, strict=True)) % 11]
    )


def _luhn_complete(prefix: str) -> str:
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError


@pytest.mark.parametrize(
    "text,expected,kind",
    [
        ("请拨打13812345678联系我", "请拨打<PHONE>联系我", "cn_mobile"),
        ("手机：+86 139-1234-5678。", "手机：<PHONE>。", "cn_mobile"),
        ("举报电话：010-65892345", "举报电话：<PHONE>", "cn_landline"),
        ("(0755)23456789转", "<PHONE>转", "cn_landline"),
        ("客服 400-810-8888", "客服 <PHONE>", "cn_landline"),
        ("mail: li.lei+news@example.com.cn!", "mail: <EMAIL>!", "email"),
        ("详见https://news.example.cn/a/123.html。谢谢", "详见<URL>。谢谢", "url"),
        ("see www.example.org/page, then", "see <URL>, then", "url"),
        ("host 10.0.12.7 down", "host <IP> down", "ip"),
        ("addr 2001:db8:0:0:0:0:2:1 up", "addr <IP> up", "ip"),
        ("Call +44 20 7946 0958 today", "Call <PHONE> today", "phone"),
        ("Call (212) 555-0147 today", "Call <PHONE> today", "phone"),
    ],
)
def test_redacts_each_type(text, expected, kind):
    new, counts = redact(text, ALL)
    assert new == expected
    assert counts[kind] == 1


def test_chinese_id_needs_a_valid_checksum_and_date():
    good = _id_with_check("11010519491231002")
    assert valid_cn_id(good)
    wrong_check = good[:-1] + ("0" if good[-1] != "0" else "1")
    bad_date = _id_with_check("11010519491331002")  # month 13
    text = f"身份证{good}，另一个{wrong_check}，还有{bad_date}"
    new, counts = redact(text, ALL)
    assert new.startswith("身份证<ID_NUMBER>，")
    assert wrong_check in new and bad_date in new
    assert counts["cn_id"] == 1


def test_bank_cards_need_luhn():
    card = _luhn_complete("622202123456789012")  # 19 digits
    spaced = "4111 1111 1111 1111"
    not_luhn = card[:-1] + str((int(card[-1]) + 1) % 10)
    new, counts = redact(f"卡号{card}、{spaced}、{not_luhn}", ALL)
    assert new == f"卡号<BANK_CARD>、<BANK_CARD>、{not_luhn}"
    assert counts["bank_card"] == 2


def test_numbers_that_are_not_pii_survive():
    text = (
        "2024年10月18日 10:23，营收12345678元，增长4.6%，版本1.2.3.4.5，订单号20241018，"
        "see rustdoc::broken_intra_doc_links and std::fmt::Debug, ratio 3:2:1, time 10:23:45"
    )
    new, counts = redact(text, ALL)
    assert new == text and not counts


def test_step_counts_types_and_marks_records():
    recs = [
        make_record("电话13812345678，邮箱a@b.cn", source="m", offset=0),
        make_record("nothing here", source="m", offset=1),
        make_record(
            None, source="m", offset=2, messages=[{"role": "user", "content": "ip 8.8.8.8"}]
        ),
    ]
    step = RedactPii()
    res = run_steps(recs, [step])
    assert res.kept[0]["text"] == "电话<PHONE>，邮箱<EMAIL>"
    assert res.kept[0]["meta"]["pii"] == {"cn_mobile": 1, "email": 1}
    assert res.kept[2]["messages"][0]["content"] == "ip <IP>"
    assert step.stats.extra == {"cn_mobile": 1, "email": 1, "ip": 1}
    assert step.stats.changed == 2


def test_only_selected_types():
    new, _ = redact("13812345678 a@b.cn", ["email"])
    assert new == "13812345678 <EMAIL>"


def test_international_prefix_inside_a_longer_number_is_not_a_phone():
    # "00" in the middle of a tracking/order number is not an international dialling prefix.
    text = "parcel 7731200447911123456 shipped; call +44 7911 123456 for help"
    new, counts = redact(text, ["phone"])
    assert "7731200447911123456" in new
    assert "+44 7911 123456" not in new and counts.get("phone") == 1
