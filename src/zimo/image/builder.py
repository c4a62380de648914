"""Train one image sub-model into its artifact folder: ``image_model.json`` (what the
predictor needs), ``label_vecs.npy`` (each label's vector in the shared space) and either
``encoder.pt`` (the embedded default) or ``probe.npz`` (a CLIP's linear probe)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import DataError
from zimo.fileio import write_bytes_atomic, write_json_atomic


def _bf16(setting: str) -> bool:
    from zimo.hw import cpu_has_fast_bf16

    return {"on": True, "off": False}.get(setting, cpu_has_fast_bf16())


def _targets(records: list[dict], ids: list[int], labels: list[str]) -> np.ndarray:
    index = {lab: i for i, lab in enumerate(labels)}
    return np.array([index.get(records[i]["label"], -1) for i in ids], dtype=np.int64)


def fit_settings(tcfg, n_train: int, bf16: bool, flip: bool):
    from zimo.image.fit import FitSettings

    # A batch of at most a quarter of the data: a few hundred images still take several steps;
    # the LR follows the batch by its square root (linear scaling starves small-batch runs).
    bs = max(8, min(tcfg.batch_size, n_train // 4 or 8))
    return FitSettings(budget_cpu_s=tcfg.budget_cpu_s, max_epochs=tcfg.max_epochs, batch_size=bs,
                       lr=tcfg.lr * (bs / tcfg.batch_size) ** 0.5, bf16=bf16, flip=flip, seed=tcfg.seed)  # fmt: skip


def train_submodel(pixels: np.ndarray, records: list[dict], train_ids: list[int], meta: dict,
                   icfg, tcfg, out: Path, progress=None) -> dict[str, Any]:  # fmt: skip
    labels = meta["labels"]
    spec = {"labels": labels, "image_size": meta["image_size"], "templates": icfg.templates,
            "image_config": icfg.model_dump(mode="json")}  # fmt: skip
    if tcfg.method == "clip":
        return _train_clip(pixels, records, train_ids, spec, icfg, tcfg, out, progress)
    import torch

    from zimo.image.prompts import embed_texts, label_vectors
    from zimo.image.train import train_image_text

    lv = label_vectors(labels, icfg.templates)
    y = _targets(records, train_ids, labels)
    caps = [records[i].get("caption") for i in train_ids]
    cap_vecs = None
    if any(caps):
        have = [i for i, c in enumerate(caps) if c]
        cap_vecs = np.zeros((len(caps), lv.shape[1]), np.float32)
        cap_vecs[have] = embed_texts([caps[i] for i in have])
    if (y < 0).all() and cap_vecs is None:
        raise DataError("no labelled or captioned image in the train split", "add images")
    settings = fit_settings(tcfg, len(train_ids), _bf16(tcfg.bf16), icfg.flip)
    state = {"step": 0, "t0": time.perf_counter()}

    def on_step(p: float, loss: float) -> None:
        state["step"] += 1
        if progress:
            # Wall-clock images/s since training began: what the user waits on.
            ips = state["step"] * settings.batch_size / max(time.perf_counter() - state["t0"], 1e-9)
            progress({"step": round(p * 1000), "total_steps": 1000, "loss": loss,
                      "images_per_s": ips})  # fmt: skip

    x = torch.from_numpy(np.ascontiguousarray(pixels[train_ids]))
    model, rep = train_image_text(x, torch.from_numpy(y), lv, settings, tuple(tcfg.widths),
                                  captions=cap_vecs, on_step=on_step)  # fmt: skip
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    write_bytes_atomic(out / "encoder.pt", buf.getvalue())
    _save(out / "label_vecs.npy", lv)
    spec.update(backend="embedded", widths=list(tcfg.widths), text_encoder="all-MiniLM-L6-v2",
                embed_dim=int(lv.shape[1]))  # fmt: skip
    write_json_atomic(out / "image_model.json", spec)
    summary = {"train_images": len(train_ids), "epochs": round(rep.epochs, 2), "steps": rep.steps,
               "cpu_s": round(rep.cpu_s, 1), "wall_s": round(rep.wall_s, 1),
               "stopped_by": rep.stopped_by, "final_loss": round(rep.final_loss, 4),
               "train_images_per_cpu_s": round(rep.train_images_per_cpu_s, 1), "bf16": settings.bf16,
               "batch_size": settings.batch_size}  # fmt: skip
    write_json_atomic(out / "train_summary.json", summary)
    return summary


def _save(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    write_bytes_atomic(path, buf.getvalue())


def fit_probe(feats: np.ndarray, y: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """A logistic regression on frozen image features: (coef, intercept) over all labels."""
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        raise DataError("a linear probe needs labelled images of two labels or more",
                        "add labels, or use head: zero_shot")  # fmt: skip
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(feats, y)
    coef = np.zeros((n_labels, feats.shape[1]), np.float32)
    intercept = np.full(n_labels, -1e4, np.float32)  # a label absent from train: never
    coef[lr.classes_] = lr.coef_ if len(lr.classes_) > 2 else np.r_[-lr.coef_, lr.coef_]
    intercept[lr.classes_] = (lr.intercept_ if len(lr.classes_) > 2
                              else np.r_[-lr.intercept_, lr.intercept_])  # fmt: skip
    return coef, intercept


def clip_spec(tcfg) -> dict[str, Any]:
    """Which CLIP a train config names, as ``image_model.json`` records it."""
    ck = Path(tcfg.checkpoint).expanduser()
    return {"source": tcfg.source, "checkpoint": str(ck) if ck.exists() else tcfg.checkpoint,
            "model_name": tcfg.model_name}  # fmt: skip


def _train_clip(pixels, records, train_ids, spec, icfg, tcfg, out: Path,
                progress=None) -> dict[str, Any]:  # fmt: skip
    from zimo.image.clip import load_clip
    from zimo.image.prompts import prompts_for

    spec.update(backend="clip", head=tcfg.head, **clip_spec(tcfg))
    clip = load_clip(spec)
    labels = spec["labels"]
    prompts = [p for g in prompts_for(labels, icfg.templates) for p in g]
    summary: dict[str, Any] = {"train_images": len(train_ids), "head": tcfg.head,
                               "source": tcfg.source}  # fmt: skip
    y = _targets(records, train_ids, labels)
    if tcfg.head == "lora":
        summary.update(_train_lora(clip, pixels, records, train_ids, y, prompts, icfg, tcfg, out,
                                   progress))  # fmt: skip
    from zimo.image.clip_lora import label_vectors

    # After LoRA with text_tower, the label vectors come from the tuned text tower.
    lv = label_vectors(clip, prompts, len(labels))
    _save(out / "label_vecs.npy", lv)
    if tcfg.head == "linear_probe":
        keep = y >= 0
        feats = clip.embed_images(pixels[np.array(train_ids)[keep]], tcfg.batch_size)
        coef, intercept = fit_probe(feats, y[keep], len(labels))
        buf = io.BytesIO()
        np.savez(buf, coef=coef, intercept=intercept)
        write_bytes_atomic(out / "probe.npz", buf.getvalue())
    spec.update(logit_scale=clip.logit_scale, embed_dim=int(lv.shape[1]))
    write_json_atomic(out / "image_model.json", spec)
    write_json_atomic(out / "train_summary.json", summary)
    return summary


def _train_lora(clip, pixels, records, train_ids, y, prompts, icfg, tcfg, out: Path,
                progress) -> dict[str, Any]:  # fmt: skip
    import torch

    from zimo.image.clip import ADAPTER
    from zimo.image.clip_lora import train_clip_lora

    caps = [records[i].get("caption") or None for i in train_ids]
    if (y < 0).all() and not any(caps):
        raise DataError("no labelled or captioned image in the train split", "add images")
    t0 = time.perf_counter()
    seen = {"n": 0}
    bs = max(2, min(tcfg.batch_size, len(train_ids)))

    def on_step(p: float, loss: float) -> None:
        seen["n"] += bs
        if progress:
            progress({"step": round(p * 1000), "total_steps": 1000, "loss": loss,
                      "images_per_s": seen["n"] / max(time.perf_counter() - t0, 1e-9)})  # fmt: skip

    x = torch.from_numpy(np.ascontiguousarray(pixels[train_ids]))
    n_labels = len(prompts) // len(icfg.templates)
    peft_model, rep = train_clip_lora(clip, x, torch.from_numpy(y), prompts, n_labels, tcfg.lora,
                                      tcfg.batch_size, icfg.flip,
                                      captions=caps if any(caps) else None, on_step=on_step)  # fmt: skip
    peft_model.save_pretrained(str(out / ADAPTER))
    f = rep.fit
    return {"lora": {"steps": f.steps, "epochs": round(f.epochs, 2), "cpu_s": round(f.cpu_s, 1),
                     "wall_s": round(f.wall_s, 1), "stopped_by": f.stopped_by,
                     "first_loss": round(rep.first_loss, 4), "final_loss": round(f.final_loss, 4),
                     "trainable_params": rep.trainable_params, "r": tcfg.lora.r,
                     "text_tower": tcfg.lora.text_tower}}  # fmt: skip
