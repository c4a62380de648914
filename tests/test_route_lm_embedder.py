"""The router on an embedded LM's hidden state (route.router.embedder: <model>@<layer>).

Real gecko weights, real SQLite caches, a real fit -> save -> load -> decide round trip.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from route_fixtures import small_outcome_dir
from zimo.errors import ConfigError
from zimo.route.config import parse_route_config
from zimo.route.lm_features import LMEmbedder, lm_hidden
from zimo.route.outcomes import load_outcome_csvs
from zimo.route.router import Router, fit_router

LAYER = 6  # a shallow cut keeps the test fast; the layer is a setting like any other
CFG = {
    "tiers": [
        {"name": "weak", "price_per_1k_tokens": 0.0006},
        {"name": "strong", "price_per_1k_tokens": 0.01},
    ],
    "target": {"quality": 0.97},
    "router": {"kind": "ensemble", "folds": 3, "knn_k": 15, "embedder": f"gecko@{LAYER}"},
}
PLAIN = "The cat sat on the mat and looked out of the window at the birds in the garden."
PARA = "A cat was sitting on the mat, watching the birds in the garden through the window."
NOISE = "qz7 vv0x plf9 }{ zzkq 83jd wq!! xpt0 mmvb 4ryy qqlz 9ggh jj2p zzzk vbbx"


def test_hidden_states_are_cached_batched_alike_and_say_something(tmp_path):
    cache = tmp_path / "h.sqlite"
    h = lm_hidden([PLAIN, NOISE, PARA, "hi"], layer=LAYER, cache_path=cache, batch_size=4)
    assert h.shape[0] == 4 and h.shape[1] >= 256 and np.isfinite(h).all()
    # One at a time (no padding) gives the vectors the padded batch gave.
    alone = lm_hidden([NOISE], layer=LAYER, batch_size=1)
    cos = float(alone[0] @ h[1] / np.linalg.norm(alone[0]) / np.linalg.norm(h[1]))
    assert cos > 0.99, cos
    # The disk cache answers exactly what was computed; another layer is another key.
    assert np.array_equal(lm_hidden([PARA], layer=LAYER, cache_path=cache)[0], h[2])
    deeper = lm_hidden([PARA], layer=LAYER + 2, cache_path=cache)
    assert not np.allclose(deeper[0], h[2])

    emb = LMEmbedder(f"gecko@{LAYER}").fit(h)
    z = emb.transform(h)
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0)
    assert z[0] @ z[2] > z[0] @ z[1]  # paraphrases closer than noise, after standardising


def test_router_on_lm_layer_round_trips_and_decides(tmp_path):
    o = load_outcome_csvs(small_outcome_dir(tmp_path / "data", per_subject=20), ["weak", "strong"])
    router = fit_router(o, CFG, tmp_path / "r", embed_cache_path=tmp_path / "e.sqlite")
    assert router.embedder is not None and router.embedder.layer == LAYER
    meta = json.loads((tmp_path / "r" / "router.json").read_text())
    assert meta["embedder"] == f"gecko@{LAYER}"
    assert meta["cross_fitted"]["apgr"] > 0.0
    loaded = Router.load(tmp_path / "r", embed_cache_path=tmp_path / "e.sqlite")
    prompts = list(o.prompts[:12])
    assert np.allclose(loaded.scores(prompts), router.scores(prompts))
    # A new prompt is embedded by the LM (no cache), then answered from the LRU when repeated.
    q = "Which organelle makes most of the ATP in a cell?\nA. ribosome\nB. mitochondrion"
    first = loaded.decide(q)
    assert q in loaded.embedder._lru
    assert loaded.decide(q) == first and first[0] in ("weak", "strong")
    # An empty prompt (no tokens at all for this tokenizer) is still routed.
    assert loaded.decide("")[0] in ("weak", "strong")


def test_bad_embedder_settings_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="embedder"):
        parse_route_config({**CFG, "router": {"embedder": "gecko-16"}})
    o = load_outcome_csvs(small_outcome_dir(tmp_path / "data", per_subject=6), ["weak", "strong"])
    with pytest.raises(ConfigError, match="has 30 layers, not 99"):
        fit_router(o, {**CFG, "router": {**CFG["router"], "embedder": "gecko@99"}})
