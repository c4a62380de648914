"""The eval stage of an image project: every trained sub-model and the baselines on the test
split; accuracy and macro-F1 with bootstrap CIs, text->image recall@1/@5 by label prompt, a
confusion matrix and the worst mistakes; ``metrics.json`` + ``report.html``.

Baselines: a CNN trained from scratch with the same tower, recipe and CPU budget as the
embedded default (always: it shows what training into the text space costs or gains), and a
CLIP's zero-shot labels when the project has a CLIP with a linear probe or LoRA, and with LoRA
also a linear probe on the untuned CLIP's features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from zimo.fileio import write_json_atomic


def _scores(pred_labels: list[str], truth: list[str], labels: list[str],
            n_boot: int = 1000) -> dict[str, Any]:  # fmt: skip
    from zimo.eval.metrics import label_metrics

    m = label_metrics(truth, pred_labels, labels, n_boot=n_boot)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "confusion": m["confusion"]}  # fmt: skip


def _retrieval(pred, img_vecs: np.ndarray, truth: list[str], labels: list[str], templates) -> dict:
    from zimo.image.prompts import prompts_for
    from zimo.image.retrieval import recall_at_k

    present = sorted(set(truth) & set(labels), key=labels.index)
    queries = [q for g in prompts_for(present, templates) for q in g]
    q_labels = [lab for lab in present for _ in templates]
    if not queries:
        return {}
    return recall_at_k(pred.embed_texts(queries), q_labels, img_vecs, truth)


def _baseline_cnn(pixels, records, split, labels, tcfg, icfg) -> tuple[list[str], dict]:
    import torch

    from zimo.image.builder import _bf16, _targets, fit_settings
    from zimo.image.fit import batched
    from zimo.image.train import train_cnn_baseline

    ids = [i for i in split["train"] if records[i]["label"] in labels]
    y = _targets(records, ids, labels)
    settings = fit_settings(tcfg, len(ids), _bf16(tcfg.bf16), icfg.flip)
    x = torch.from_numpy(np.ascontiguousarray(pixels[ids]))
    model, rep = train_cnn_baseline(x, torch.from_numpy(y), len(labels), settings,
                                    tuple(tcfg.widths))  # fmt: skip
    test = torch.from_numpy(np.ascontiguousarray(pixels[split["test"]]))
    pred = batched(model, test, bf16=settings.bf16).argmax(1).tolist()
    return [labels[i] for i in pred], {"epochs": round(rep.epochs, 2), "cpu_s": round(rep.cpu_s, 1)}


_HEADS = {"zero_shot": "zero-shot", "linear_probe": "linear probe", "lora": "LoRA on the towers"}


def _head(pred) -> str:
    return pred.spec.get("head") or ("linear_probe" if pred.probe is not None else "zero_shot")


def _clip_baselines(pred, emb, pixels, records, split, test_px, labels,
                    icfg) -> dict[str, tuple[list[str], str]]:  # fmt: skip
    """The same CLIP untuned, beside the head it was built with: zero-shot from the label
    prompts (beside a probe or LoRA), and a linear probe on the frozen features (beside LoRA,
    so the report shows what tuning the towers adds over a probe)."""
    head = _head(pred)
    if head == "zero_shot":
        return {}
    out: dict[str, tuple[list[str], str]] = {}
    if head == "linear_probe":
        zs = pred.logit_scale * emb @ pred.label_vecs.T
        out["zero_shot"] = ([labels[i] for i in zs.argmax(1)],
                            "the same CLIP, zero-shot from the label prompts")  # fmt: skip
        return out
    from zimo.image.builder import _targets, fit_probe
    from zimo.image.clip import load_clip
    from zimo.image.clip_lora import label_vectors
    from zimo.image.prompts import prompts_for

    base = load_clip(pred.spec)  # without the adapter
    prompts = [p for g in prompts_for(labels, icfg.templates) for p in g]
    emb_b = base.embed_images(test_px)
    zs = emb_b @ label_vectors(base, prompts, len(labels)).T
    out["zero_shot"] = ([labels[i] for i in zs.argmax(1)],
                        "the same CLIP before LoRA, zero-shot from the label prompts")  # fmt: skip
    y = _targets(records, split["train"], labels)
    keep = np.array(split["train"])[y >= 0]
    if len(set(y[y >= 0].tolist())) >= 2:
        coef, intercept = fit_probe(base.embed_images(pixels[keep]), y[y >= 0], len(labels))
        lp = emb_b @ coef.T + intercept
        out["linear_probe"] = ([labels[i] for i in lp.argmax(1)],
                               "the same CLIP before LoRA, a linear probe on its frozen features")  # fmt: skip
    return out


def evaluate_image(project, pixels, records, split, meta, trains: dict[str, Path], out: Path,
                   console: Console | None = None) -> dict[str, Any]:  # fmt: skip
    from zimo.image.config import image_config
    from zimo.image.predictor import ImagePredictor
    from zimo.image.report import write_eval_report

    console = console or Console(stderr=True)
    icfg = image_config(project)
    ecfg = project.config.eval
    labels = meta["labels"]
    test_ids = [i for i in split["test"] if records[i]["label"] in labels]
    truth = [records[i]["label"] for i in test_ids]
    test_px = pixels[test_ids]
    systems: dict[str, dict[str, Any]] = {}
    primary_pred = None
    mistakes: list[tuple[int, str, float]] = []
    for stage, folder in sorted(trains.items()):
        pred = ImagePredictor(folder)
        name = "zimo_default" if pred.backend == "embedded" else "clip"
        if stage != "train":
            name += "@" + stage.removeprefix("train-")
        with console.status(f"  scoring {name} on {len(test_ids)} test images…"):
            emb = pred.embed_pixels(test_px)
            probs = pred.probs_from_embeddings(emb)
            got = [labels[i] for i in probs.argmax(1)]
            row = {
                **_scores(got, truth, labels, ecfg.n_boot),
                **_retrieval(pred, emb, truth, labels, icfg.templates),
            }
        row["description"] = ("small CNN trained into the frozen MiniLM text space"
                              if pred.backend == "embedded" else
                              f"CLIP {Path(pred.spec['checkpoint']).name}, " + _HEADS[_head(pred)])  # fmt: skip
        systems[name] = row
        if pred.backend == "clip":
            with console.status(f"  scoring {name}'s untuned baselines…"):
                for suffix, (got_b, desc) in _clip_baselines(pred, emb, pixels, records, split,
                                                             test_px, labels, icfg).items():  # fmt: skip
                    systems[f"{name}_{suffix}"] = {**_scores(got_b, truth, labels, ecfg.n_boot),
                                                   "description": desc}  # fmt: skip
        if stage == "train":
            primary_pred = pred
            conf = probs.max(1)
            wrong = [(k, got[k], float(conf[k])) for k in range(len(got)) if got[k] != truth[k]]
            mistakes = sorted(wrong, key=lambda t: -t[2])[: ecfg.worst_mistakes]
    primary = project.config.primary()
    base_cfg = primary if primary.method == "image" else None
    if base_cfg is None:
        from zimo.image.config import ImageTrainConfig

        base_cfg = ImageTrainConfig()
    if getattr(base_cfg, "baseline_cnn", True) and len(labels) >= 2:
        with console.status("  training the same-budget CNN baseline…"):
            got, info = _baseline_cnn(pixels, records, split, labels, base_cfg, icfg)
        systems["cnn_from_scratch"] = {**_scores(got, truth, labels, ecfg.n_boot), **info,
                                       "description": "the same CNN with a linear head, trained "
                                       "from scratch with the same recipe and CPU budget"}  # fmt: skip
    headline = {
        s: {k: (v["value"] if isinstance(v, dict) else v) for k, v in r.items()
            if k in ("accuracy", "macro_f1", "recall_at_1", "recall_at_5")}
        for s, r in systems.items()
    }  # fmt: skip
    result = {"headline": headline, "systems": systems, "test_images": len(test_ids),
              "labels": labels}  # fmt: skip
    write_json_atomic(out / "metrics.json", result)
    write_eval_report(out / "report.html", project.name, result,
                      [(test_px[k], f"{truth[k]} → {g} ({c:.0%})") for k, g, c in mistakes])  # fmt: skip
    for s, h in headline.items():
        console.print(f"  {s}: accuracy {h['accuracy']:.3f}, macro-F1 {h['macro_f1']:.3f}"
                      + (f", recall@1 {h['recall_at_1']:.2f}" if "recall_at_1" in h else ""))  # fmt: skip
    del primary_pred
    return result
