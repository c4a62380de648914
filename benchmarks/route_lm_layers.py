"""Full data: do gecko's hidden states help the default router on unseen subjects, and at what
price per request?

    python benchmarks/route_lm_layers.py [--layers 8 16] [--repeats 3]

``route_lm_features.py`` probed gecko features on a 25-per-subject subsample, where even the
surface-only router looked strong, so its differences did not carry over. This runs the default
router itself (``make_scorer("ensemble")``: length, logistic regression, kNN and surface
members, cross-fitted calibration) on all 11k prompts, grouped 5-fold by subject x repeats
(the folds of ``route_mmlu.py``), next to two variants per gecko layer L:

- ``plus@L``: the ensemble + a logistic-regression and a kNN member on gecko's mean-pooled
  layer-L hidden state (standardised on the training fold, unit-normalised);
- ``swap@L``: the same members on gecko's hidden state *instead of* MiniLM (no MiniLM pass).

Differences are paired by fold. The price: CPU ms of MiniLM and of gecko's first L layers (no
LM head) on a ~100-token prompt, one at a time, as ``decide()`` would run them. Hidden states
are computed once for all layers in one truncated pass (bf16 where the CPU has it, 256 tokens,
like MiniLM's truncation) and cached in ``benchmarks/results/cache/gecko_layers.npz``. In that
pass the deepest layer's state comes after the model's final norm (as the router's
``LMEmbedder`` computes it for any layer), the shallower ones before it; ``route_mmlu.py``
measures the chosen layer through the router's own code.
``--variants swap`` runs only the variants without MiniLM (the run that chose layer 12).
Writes ``benchmarks/results/route_lm_layers.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from route_mmlu import CACHE, DEFAULT_DATA, RESULTS, labels_for  # noqa: E402
from zimo.hw import cpu_info, set_threads  # noqa: E402
from zimo.route.metrics import evaluate_scores  # noqa: E402
from zimo.route.outcomes import load_outcome_csvs  # noqa: E402
from zimo.route.scorers import (  # noqa: E402
    ENSEMBLE_FOLDS,
    EnsembleScorer,
    PromptFeatures,
    Scorer,
    build_features,
    ensemble_member,
)

LAYER_CACHE = RESULTS / "cache" / "gecko_layers.npz"
MAX_TOKENS = 256


def gecko_layers(prompts: list[str], layers: list[int], batch: int = 16) -> np.ndarray:
    """``(len(layers), n, hidden)`` mean-pooled hidden states (position 0, the attention sink,
    left out), one pass through gecko's first ``max(layers)`` layers; cached on disk."""
    key = hashlib.sha1(
        json.dumps(
            [MAX_TOKENS, layers, hashlib.sha1("\0".join(prompts).encode()).hexdigest()]
        ).encode()
    ).hexdigest()
    if LAYER_CACHE.exists():
        z = np.load(LAYER_CACHE)
        if str(z["key"]) == key:
            return z["out"]
    import torch
    from rich.progress import Progress

    from zimo.hw import cpu_has_fast_bf16
    from zimo.models import load_causal_lm

    lm, tok = load_causal_lm("gecko", dtype=torch.bfloat16 if cpu_has_fast_bf16() else None)
    body = lm.model
    body.layers = body.layers[: max(layers)]
    enc = tok(prompts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    order = np.argsort([len(x) for x in enc], kind="stable")[::-1]
    out = np.zeros((len(layers), len(prompts), lm.config.hidden_size), np.float32)
    tok.padding_side = "right"
    with torch.inference_mode(), Progress(transient=True) as bar:
        task = bar.add_task("gecko hidden states", total=len(prompts))
        for a in range(0, len(order), batch):
            idx = order[a : a + batch]
            b = tok.pad({"input_ids": [enc[i] for i in idx]}, padding=True, return_tensors="pt")
            res = body(**b, output_hidden_states=True)
            m = b["attention_mask"].clone()
            m[:, 0] = 0
            m = m.unsqueeze(-1).float()
            for j, layer in enumerate(layers):
                h = res.hidden_states[layer].float()
                out[j, idx] = ((h * m).sum(1) / m.sum(1).clamp(min=1)).numpy()
            bar.advance(task, len(idx))
    LAYER_CACHE.parent.mkdir(parents=True, exist_ok=True)
    tmp = LAYER_CACHE.with_suffix(".tmp.npz")
    np.savez(tmp, out=out, key=np.array(key))
    os.replace(tmp, LAYER_CACHE)
    return out


@dataclasses.dataclass
class _Features(PromptFeatures):
    lm: np.ndarray | None = None

    def subset(self, idx):
        base = super().subset(idx)
        return _Features(
            base.surface,
            base.emb,
            base.groups,
            base.form,
            lm=None if self.lm is None else self.lm[idx],
        )


class _OnLM(Scorer):
    """A member that reads gecko's vector where MiniLM's would be."""

    needs_embeddings = True

    def __init__(self, inner: Scorer):
        self.inner = inner

    def _f(self, f):
        return PromptFeatures(f.surface, f.lm, f.groups)

    def fit(self, f, y):
        self.inner.fit(self._f(f), y)
        return self

    def predict(self, f):
        return self.inner.predict(self._f(f))


def _ensemble(kinds: list[str]) -> EnsembleScorer:
    members = [
        _OnLM(ensemble_member(k[:-3], "gain")) if k.endswith("@lm") else ensemble_member(k, "gain")
        for k in kinds
    ]
    return EnsembleScorer(members, folds=ENSEMBLE_FOLDS, seed=0)


# The ensemble this layer sweep measured (before the gbm member joined the default).
ENSEMBLE_MEMBERS = ("length", "logreg", "knn", "features")
VARIANTS = {
    "plus": [*ENSEMBLE_MEMBERS, "logreg@lm", "knn@lm"],
    "swap": [k if k not in ("logreg", "knn") else f"{k}@lm" for k in ENSEMBLE_MEMBERS],
}


def price(layers: list[int], n: int = 12) -> dict:
    """CPU ms p50 (this thread) of one MiniLM pass and of gecko's first L layers, ~100 tokens."""
    import torch

    from zimo.embeddings import Embedder
    from zimo.hw import cpu_has_fast_bf16
    from zimo.models import load_causal_lm

    text = "The following are multiple choice questions (with answers) about {topic}. " * 7
    emb = Embedder(max_seq_length=256, cache_size=0, dtype="auto")
    lm, tok = load_causal_lm("gecko", dtype=torch.bfloat16 if cpu_has_fast_bf16() else None)
    all_layers = lm.model.layers
    out: dict[str, float] = {}

    def p50(fn) -> float:
        fn(0)
        cpu, wall = [], []
        for i in range(1, n + 1):
            c, w = time.thread_time(), time.perf_counter()
            fn(i)
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - w)
        out.setdefault("wall", {})[name] = round(1000 * float(np.median(wall)), 1)
        return round(1000 * float(np.median(cpu)), 1)

    name = "minilm"
    out["minilm"] = p50(lambda i: emb.embed([text.format(topic=f"topic {i}")]))
    ids = tok(text.format(topic="biology"), return_tensors="pt")
    out["tokens"] = int(ids["input_ids"].shape[1])
    with torch.inference_mode():
        for layer in layers:
            lm.model.layers = all_layers[:layer]
            name = f"gecko@{layer}"
            out[name] = p50(lambda i: lm.model(**ids))
    lm.model.layers = all_layers
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    set_threads()
    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()
    from sklearn.model_selection import GroupKFold

    o = load_outcome_csvs(DEFAULT_DATA, ["weak", "strong"])
    f0 = build_features(o.prompts, max_seq_length=256, cache_path=CACHE, groups=o.groups)
    hid = gecko_layers(list(o.prompts), a.layers)
    cost = price(a.layers)
    y = labels_for(o, "gain")
    qw, qs = o.quality[:, 0], o.quality[:, -1]
    # Per-fold results survive an interrupted run (the CV takes ~20 min on 2 busy cores).
    partial = RESULTS / "cache" / "route_lm_layers.partial.json"
    run_key = json.dumps([a.layers, a.variants, a.folds, a.repeats, len(o)])
    saved = json.loads(partial.read_text()) if partial.exists() else {}
    per_fold: dict[str, list] = saved.get("per_fold", {}) if saved.get("key") == run_key else {}
    fold = 0
    for rep in range(a.repeats):
        splits = GroupKFold(n_splits=a.folds, shuffle=True, random_state=rep).split(
            o.prompts, groups=o.groups
        )
        for tr, te in splits:
            fold += 1
            if fold <= len(per_fold.get("ensemble", [])):
                continue

            def score(name, kinds, f, tr=tr, te=te):
                s = _ensemble(kinds).fit(f.subset(tr), y[tr]).predict(f.subset(te))
                m = evaluate_scores(s, qw[te], qs[te])
                per_fold.setdefault(name, []).append((m["apgr"], m["cpt50"]))

            score(
                "ensemble",
                list(ENSEMBLE_MEMBERS),
                _Features(f0.surface, f0.emb, f0.groups, f0.form),
            )
            for j, layer in enumerate(a.layers):
                h = hid[j].astype(np.float64)
                h = (h - h[tr].mean(0)) / (h[tr].std(0) + 1e-6)  # training-fold statistics
                h /= np.linalg.norm(h, axis=1, keepdims=True)
                f = _Features(f0.surface, f0.emb, f0.groups, f0.form, lm=h)
                for name in a.variants:
                    score(f"{name}@{layer}", VARIANTS[name], f)
            partial.write_text(json.dumps({"key": run_key, "per_fold": per_fold}))
            print(fold, {k: np.round(np.mean(v, 0), 3).tolist() for k, v in per_fold.items()})
    base = np.array(per_fold["ensemble"])
    rows = {}
    for name, v in per_fold.items():
        v = np.array(v)
        d = v - base
        se = d.std(0) / np.sqrt(len(d))
        rows[name] = {
            "apgr": float(v[:, 0].mean()),
            "cpt50": float(v[:, 1].mean()),
            "delta_apgr": float(d[:, 0].mean()),
            "delta_apgr_se": float(se[0]),
            "delta_cpt50": float(d[:, 1].mean()),
            "delta_cpt50_se": float(se[1]),
            "folds": len(v),
        }
    out = {
        "benchmark": "route_lm_layers",
        "prompts": len(o),
        "subjects": len(set(o.groups.tolist())),
        "folds": a.folds,
        "repeats": a.repeats,
        "layers": a.layers,
        "max_tokens": MAX_TOKENS,
        "routers": rows,
        "cpu_ms_p50": cost,
        "cpu": cpu_info(),
        "run": {
            "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(time.process_time() - c0, 1),
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg(),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "route_lm_layers.json").write_text(json.dumps(out, indent=1))
    lines = [
        "# route_lm_layers: gecko hidden states in the default router (all prompts, unseen "
        "subjects)",
        "",
        f"{out['prompts']} prompts, {out['subjects']} subjects, grouped {a.folds}-fold x "
        f"{a.repeats} repeats (route_mmlu's folds). Paired Δ vs the default ensemble ± standard "
        "error over folds. CPU: " + cpu_info()["model"],
        "",
        "| router | APGR | CPT(50%) | Δ APGR | Δ CPT(50%) | extra price per request |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        layer = name.split("@")[1] if "@" in name else None
        extra = (
            "—"
            if layer is None
            else f"+{cost[f'gecko@{layer}']} ms"
            + (f", −{cost['minilm']} ms (no MiniLM)" if name.startswith("swap") else "")
        )
        lines.append(
            f"| {name} | {r['apgr']:.3f} | {r['cpt50']:.3f} | {r['delta_apgr']:+.3f} ± "
            f"{r['delta_apgr_se']:.3f} | {r['delta_cpt50']:+.3f} ± {r['delta_cpt50_se']:.3f} "
            f"| {extra} |"
        )
    lines += [
        "",
        f"CPU ms p50, one {cost['tokens']}-token prompt: MiniLM {cost['minilm']}, "
        + ", ".join(f"gecko first {x} layers {cost[f'gecko@{x}']}" for x in a.layers)
        + ". The router's budget is 50 ms p50 per decision.",
        "",
        f"Run: {out['run']['wall_s']} s wall, {out['run']['cpu_s']} s CPU; load average "
        f"{load0[0]:.1f} at the start (2 cores shared with other jobs).",
    ]
    (RESULTS / "route_lm_layers.md").write_text("\n".join(lines) + "\n")
    partial.unlink(missing_ok=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
