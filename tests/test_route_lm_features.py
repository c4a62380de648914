"""gecko prompt features for the router (real embedded model; no mocks)."""

from __future__ import annotations

import numpy as np
import pytest

from zimo.route.lm_features import SCALAR_NAMES, lm_features

pytestmark = pytest.mark.slow  # loads the 135M model: seconds idle, minutes on busy cores

PLAIN = "The cat sat on the mat and looked out of the window at the birds in the garden."
NOISE = "qz7 vv0x plf9 }{ zzkq 83jd wq!! xpt0 mmvb 4ryy qqlz 9ggh jj2p zzzk vbbx"


def test_surprisal_separates_text_from_noise_and_is_cached(tmp_path):
    cache = tmp_path / "lm.sqlite"
    scal, hid = lm_features([PLAIN, NOISE, "hi"], cache_path=cache, max_tokens=64)
    assert scal.shape == (3, len(SCALAR_NAMES)) and hid.shape[0] == 3 and hid.shape[1] >= 256
    nll = dict(zip(SCALAR_NAMES, scal.T, strict=True))["lm_nll_mean"]
    assert nll[1] > nll[0] + 1.0, nll  # gibberish is far more surprising than plain English
    assert np.isfinite(scal).all() and np.isfinite(hid).all()
    # A second call reads the disk cache: identical numbers, no model work needed.
    again, hid2 = lm_features([NOISE], cache_path=cache, max_tokens=64)
    assert np.array_equal(again[0], scal[1]) and np.array_equal(hid2[0], hid[1])
    # The hidden state says something about the text: two paraphrases are closer than noise.
    para = "A cat was sitting on the mat, watching the birds in the garden through the window."
    _, h = lm_features([para], cache_path=cache, max_tokens=64)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    assert cos(h[0], hid[0]) > cos(h[0], hid[1])


def test_answer_confidence_follows_the_model_and_is_cached(tmp_path):
    from zimo.route.lm_features import CONFIDENCE_NAMES, lm_confidence

    q = "Q: Pick the letter.\nA. one\nB. two\nC. three\nD. four\nAnswer:"
    # Five answered examples before: the model follows the format (answers with a letter)
    # where alone it mostly ends its turn.
    primed = "\n\n".join([q + " B"] * 5 + [q])
    five = "Q: Pick.\nA. a\nB. b\nC. c\nD. d\nE. e\nAnswer:"
    cache = tmp_path / "conf.sqlite"
    c = lm_confidence([q, primed, five, "Tell me a story."], cache_path=cache)
    assert c.shape == (4, len(CONFIDENCE_NAMES)) and np.isfinite(c).all()
    col = dict(zip(CONFIDENCE_NAMES, c.T, strict=True))
    assert ((col["lm_letter_entropy"] >= 0) & (col["lm_letter_entropy"] <= 1 + 1e-6)).all()
    assert col["lm_letter_mass"][1] > col["lm_letter_mass"][0] + 1.0, col["lm_letter_mass"]
    assert col["lm_letter_mass"][1] > np.log(0.5)  # most of the next token's mass on a letter
    assert ((col["lm_letter_top"] >= 0.25 - 1e-6) & (col["lm_letter_top"] <= 1 + 1e-6))[:2].all()
    assert col["lm_letter_top"][2] >= 0.2 - 1e-6  # five options: the top is at least 1/5
    again = lm_confidence([primed], cache_path=cache)
    assert np.array_equal(again[0], c[1])
