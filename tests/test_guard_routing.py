"""Language routing: with ``model: auto`` each record goes to the scorer of its script and is
judged by that scorer's own calibration (real embedded gecko and gecko-zh weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zimo.guard import GuardConfig
from zimo.guard.calibration import build_calibration, save_calibration
from zimo.guard.detect import Detector

ZH = "脂肪肝患者和正常人一样每天都要吃水果，只是量和品种稍微要调整，一般选含糖量比较低的水果。"
ZH_WITH_TERMS = "我们用 PyTorch 和 CUDA 训练模型，然后把权重导出成 GGUF 格式，在 CPU 上也能运行。"
EN = (
    "The committee met on Tuesday to review the budget for the coming year, and most of the "
    "members agreed that the library should stay open on Sundays."
)
EN_SHORT = "Thanks, see you soon."


def _loglik_calibration(model: str, human_scores: np.ndarray, min_tokens: int) -> dict:
    """A calibration of the plain log-likelihood whose threshold sits at the top of
    ``human_scores`` (a scorer-free way to decide what gets flagged)."""
    n = len(human_scores)
    return build_calibration(
        {"loglik": np.r_[human_scores, human_scores + 1]},
        np.array([0] * n + [1] * n),
        np.full(2 * n, 64),
        model=model,
        token_budget=64,
        min_tokens=min_tokens,
        target_fpr=0.01,
    )


def _detector(calibration, **kw) -> Detector:
    cfg = dict(
        model="auto",
        score="loglik",
        calibration=calibration,
        style_adapter="off",
        token_budget=64,
        bf16="off",
        min_tokens=8,
    )
    return Detector(GuardConfig(**(cfg | kw)))


@pytest.fixture
def per_language(tmp_path):
    """A folder with a calibration per scorer: gecko-zh's flags every text (threshold far below
    any mean log p), gecko's flags none (threshold above 0, where no mean log p can be)."""
    folder = tmp_path / "cals"
    save_calibration(
        _loglik_calibration("gecko-zh", np.linspace(-100, -99, 200), 8), folder / "gecko-zh.json"
    )
    save_calibration(_loglik_calibration("gecko", np.linspace(1, 2, 200), 8), folder / "gecko.json")
    return folder


def test_each_record_is_judged_by_the_calibration_of_its_language(per_language):
    det = _detector(per_language)
    zh, zh_terms, en, en_short = det.score([ZH, ZH_WITH_TERMS, EN, EN_SHORT])
    assert [d.model for d in (zh, zh_terms, en, en_short)] == ["gecko-zh"] * 2 + ["gecko"] * 2
    # Chinese with English terms in it is still Chinese: scored and judged as Chinese.
    assert zh.trusted and zh.flag and zh_terms.trusted and zh_terms.flag
    # English is judged (trusted) under gecko's own threshold, which flags nothing here.
    assert en.trusted and not en.flag
    assert not en_short.trusted and not en_short.flag  # below min_tokens: never judged
    assert det.threshold("gecko") > 0 > -99 > det.threshold("gecko-zh")
    assert det.uncalibrated == set()


def test_a_single_calibration_applies_only_to_the_model_it_was_fitted_for(per_language, tmp_path):
    """A calibration file fitted for gecko-zh judges the Chinese records; the English ones go to
    gecko's calibration (the shipped one, if Zimo ships one), never to gecko-zh's threshold."""
    det = _detector(per_language / "gecko-zh.json")
    zh, en = det.score([ZH, EN])
    assert (zh.model, zh.flag) == ("gecko-zh", True)
    assert en.model == "gecko"
    cal_en = det.calibration("gecko") if "gecko" not in det.uncalibrated else None
    assert cal_en is None or cal_en["model"] == "gecko"
    # A folder without a calibration for one language leaves that language unjudged.
    only_zh = tmp_path / "only_zh"
    only_zh.mkdir()
    (only_zh / "gecko-zh.json").write_text((per_language / "gecko-zh.json").read_text())
    det = _detector(only_zh)
    zh, en = det.score([ZH, EN])
    assert zh.flag and not en.trusted and not en.flag and det.uncalibrated == {"gecko"}
    assert json.loads((only_zh / "gecko-zh.json").read_text())["model"] == "gecko-zh"
