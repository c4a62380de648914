"""The English verdict: gecko (SmolLM2-135M) judges English records by default with a zero-shot
score and a threshold calibrated on licensed human English only (real embedded weights)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from zimo.guard import GuardConfig
from zimo.guard.calibration import load_calibration
from zimo.guard.cli import register
from zimo.guard.detect import Detector
from zimo.guard.scores import SIMPLE_SCORES

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ZH_HUMAN = (
    "脂肪肝患者和正常人一样每天都要吃水果，只是量和品种稍微要调整，一般选含糖量比较低的水果。" * 2
)


@pytest.fixture(autouse=True)
def _fp32(monkeypatch):
    monkeypatch.setenv("ZIMO_BF16", "0")  # the same scores on every CPU kind


def _held_out_news(n: int) -> list[str]:
    """The first ``n`` paragraphs of at least 400 characters from the article benchmark's
    held-out half (MIT; the English calibration never saw them)."""
    if not (DATA / "webpages/article-extraction-benchmark/ground-truth.json").is_file():
        pytest.skip("../shared/data is not here")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from detect_en_dev import article_paragraphs

    return [r["text"] for r in article_paragraphs()[1] if len(r["text"]) >= 400][:n]


def test_the_shipped_english_calibration_loads():
    cal = load_calibration("gecko")
    assert cal["model"] == "gecko" and cal["style_adapter"] is None
    assert cal["default_score"] in SIMPLE_SCORES
    assert "combined" not in cal["scores"]  # nothing was fitted on machine text
    assert cal["n_machine"] == 0 and cal["n_human"] >= 200
    assert cal["min_tokens"] >= 48
    for entry in cal["scores"].values():
        # The threshold is the strictest source's: at or above every source's own.
        assert math.isfinite(entry["threshold"])
        assert entry["threshold"] >= max(entry["threshold_by_source"].values())
        assert len(entry["threshold_by_source"]) >= 4


def test_english_is_judged_by_default_and_human_paragraphs_are_not_flagged():
    det = Detector(GuardConfig(style_adapter="off"))
    docs = det.score(_held_out_news(4))
    assert all(d.model == "gecko" and d.trusted for d in docs)
    assert not any(d.flag for d in docs)
    assert det.score_name("gecko") == load_calibration("gecko")["default_score"]
    assert det.uncalibrated == set()


def test_short_english_is_untrusted_and_never_flagged():
    """Below the calibration's minimum length nothing is trusted, even with guard.min_tokens
    set lower and a target rate whose threshold flags almost every trusted English text."""
    det = Detector(GuardConfig(style_adapter="off", min_tokens=4))
    cal = load_calibration("gecko")
    short = "Sure! Here is a short answer: the capital of France is Paris."
    long = _held_out_news(1)[0]
    s_short, s_long = det.score([short, long])
    assert s_short.n_tokens < cal["min_tokens"] <= s_long.n_tokens
    assert not s_short.trusted and not s_short.flag and s_long.trusted
    low = Detector(GuardConfig(style_adapter="off", min_tokens=4, target_fpr=0.99))
    s_short, s_long = low.score([short, long])
    assert s_long.flag and not s_short.flag and not s_short.trusted


def test_a_mixed_file_gets_verdicts_in_both_languages(tmp_path):
    """`zimo guard score` with no options: Chinese records judged by gecko-zh's combined score,
    English ones by gecko's calibrated zero-shot score; nothing left unjudged."""
    en = _held_out_news(1)[0]
    src = tmp_path / "mixed.jsonl"
    rows = [{"id": "zh", "text": ZH_HUMAN}, {"id": "en", "text": en}]
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    app = typer.Typer()
    app.command()(lambda: None)
    register(app)
    res = CliRunner().invoke(app, ["guard", "score", str(src), "-o", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "not judged" not in res.output
    out = {
        r["id"]: r
        for r in map(json.loads, (tmp_path / "o" / "mixed.guard.jsonl").read_text().splitlines())
    }
    assert out["zh"]["guard_model"] == "gecko-zh" and out["en"]["guard_model"] == "gecko"
    assert out["zh"]["guard_trusted"] and out["en"]["guard_trusted"]
    assert not out["en"]["guard_flag"]
    report = json.loads((tmp_path / "o" / "guard_report.json").read_text())
    assert report["detector"]["scores"] == {
        "gecko-zh": "combined",
        "gecko": load_calibration("gecko")["default_score"],
    }
    assert set(report["detector"]["thresholds"]) == {"gecko-zh", "gecko"}


def test_an_explicit_score_without_an_english_threshold_is_a_one_line_error():
    """With the English scorer named explicitly, asking for `combined` (which the English
    calibration does not have) fails with a fix, rather than judging with another score."""
    from zimo.errors import ConfigError

    det = Detector(GuardConfig(model="gecko", score="combined", style_adapter="off"))
    with pytest.raises(ConfigError, match="has no score 'combined'"):
        det.threshold("gecko")
    assert Detector(GuardConfig(model="gecko")).score_name("gecko") == "logrank"
    assert Detector(GuardConfig(model="gecko-zh")).score_name("gecko-zh") == "combined"
