"""Training-mix caps: accumulate keeps human data, refusals name the records over the cap."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from zimo.errors import ZimoError
from zimo.guard import GuardConfig
from zimo.guard.mix import SyntheticShareError, build_mix, check_mix, max_synthetic
from zimo.records import make_record


def _recs(n_human: int, n_teacher: int, n_flagged: int = 0) -> list[dict]:
    rows = [make_record(f"human {i}", source="h.txt", offset=i) for i in range(n_human)]
    rows += [
        make_record(f"teacher {i}", source="t.jsonl", offset=i, origin="teacher", generator="gpt")
        for i in range(n_teacher)
    ]
    for i in range(n_flagged):
        r = make_record(f"pasted {i}", source="p.txt", offset=i)
        r["guard_flag"], r["guard_score"] = True, 1.0 + i
        rows.append(r)
    return rows


def test_config_forbids_unknown_keys_and_checks_ranges():
    assert GuardConfig().max_synthetic_share == 0.5
    with pytest.raises(ValidationError):
        GuardConfig(treshold=1.0)
    with pytest.raises(ValidationError):
        GuardConfig(max_synthetic_share=1.5)


@pytest.mark.parametrize("h,cap,want", [(10, 0.5, 10), (10, 0.2, 2), (3, 0.5, 3), (0, 0.5, 0)])
def test_max_synthetic(h, cap, want):
    assert max_synthetic(h, cap) == want


def test_accumulate_keeps_all_human_and_caps_synthetic():
    recs = _recs(n_human=6, n_teacher=10, n_flagged=3)
    mix, rep = build_mix(recs, GuardConfig(max_synthetic_share=0.5))
    humans = [r for r in recs if r["meta"]["origin"] == "human" and not r.get("guard_flag")]
    assert all(h in mix for h in humans)
    assert rep.n_synthetic == 6 and rep.n_human == 6 and rep.synthetic_share == 0.5
    assert not rep.over_cap
    assert len(rep.left_out) == len(recs) - len(mix) == 7
    # Flagged undeclared text is left out before declared teacher data.
    flagged_out = [x for x in rep.left_out if "flagged" in x["reason"]]
    assert len(flagged_out) == 3
    assert all("max_synthetic_share 0.5" in x["reason"] for x in rep.left_out)
    check_mix(mix, GuardConfig())  # the built mix passes the check


def test_replace_policy_is_refused_over_the_cap_and_names_records():
    recs = _recs(n_human=2, n_teacher=5)
    cfg = GuardConfig(policy="replace", max_synthetic_share=0.5)
    mix, rep = build_mix(recs, cfg)
    assert len(mix) == 7 and rep.over_cap
    with pytest.raises(SyntheticShareError) as e:
        check_mix(mix, cfg)
    assert isinstance(e.value, ZimoError)
    assert len(e.value.record_ids) == 3
    assert e.value.record_ids[0] in e.value.one_line()
    assert "71.4% synthetic" in e.value.one_line()
    rep = check_mix(mix, cfg, override=True)
    assert rep.synthetic_share == pytest.approx(5 / 7)


def test_a_mix_without_human_data_is_refused():
    with pytest.raises(SyntheticShareError, match="no human records"):
        check_mix(_recs(0, 3), GuardConfig())
    mix, rep = build_mix(_recs(0, 3), GuardConfig())
    assert mix == [] and len(rep.left_out) == 3


def test_flag_read_from_meta_and_nan_is_not_a_flag():
    r = make_record("x", source="a", offset=0, extra_meta={"guard_flag": True})
    r2 = make_record("y", source="a", offset=1)
    r2["guard_flag"] = float("nan")
    _, rep = build_mix([r, r2], GuardConfig(max_synthetic_share=1.0))
    assert rep.n_flagged_human == 1 and rep.n_synthetic == 1
