"""``zimo export`` and the export stage for analytic sub-models (classical text, tables).

Formats: ``onnx`` for both kinds (LightGBM via onnxmltools, TF-IDF + logistic regression via
skl2onnx), checked against the in-process model on the test split — agreement and the largest
absolute difference are recorded, and an export that disagrees fails — and ``lightgbm``, the
booster's own text model, for table sub-models. The feature steps (``features.json``) travel
with the ONNX file: the graph reads the feature matrix they produce, not raw columns.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from zimo.config import load_project
from zimo.errors import ConfigError, ZimoError
from zimo.export.config import AnalyticExportConfig
from zimo.fileio import write_json_atomic
from zimo.stages.base import StageResult
from zimo.stages.dag import artifact_path
from zimo.submodel_meta import MODEL_META, SubModelMeta
from zimo.workspace import Layout

# ONNX's TreeEnsemble compares features with float32 split thresholds (onnxmltools converts
# LightGBM's doubles; a double input does not change it, measured): a row whose value lies
# within float32 rounding of a threshold takes the other branch. On the delivery model that is
# 3 of 4,000 test rows, so a table export passes at 99% agreement and records the rest; the
# TF-IDF graph has no thresholds and must agree on every row but one in a thousand.
AGREEMENT_TARGET = {"tabular": 0.99, "classical": 0.999}


def export_tabular(folder: Path, fmt: str, out: Path, test: pd.DataFrame | None,
                   check_rows: int = 2000) -> dict[str, Any]:  # fmt: skip
    from zimo.tabular.onnx_export import export_lightgbm_onnx
    from zimo.tabular.predictor import TabularPredictor

    pred = TabularPredictor(folder)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"format": fmt, "output": str(out), "kind": "tabular"}
    for f in ("features.json", "zimo_model.json"):
        shutil.copyfile(folder / f, out / f)
    if fmt == "lightgbm":
        for f in ("model.txt", "lower.txt", "upper.txt"):
            if (folder / f).is_file():
                shutil.copyfile(folder / f, out / f)
        report["passed"] = True
        report["files"] = sorted(p.name for p in out.iterdir())
        write_json_atomic(out / "export_report.json", report)
        return report
    if fmt != "onnx":
        raise ConfigError(
            f"format {fmt!r} does not apply to a table sub-model", "use onnx or lightgbm"
        )
    if test is None or test.empty:
        raise ZimoError("no test split to check the ONNX export against", "run `zimo build` first")
    X, _ = pred.features.transform(test.head(check_rows))
    checks = {}
    for name, booster in (("model", pred.booster), ("lower", pred.lower), ("upper", pred.upper)):
        if booster is None:
            continue
        checks[name] = export_lightgbm_onnx(booster, X.shape[1], out / f"{name}.onnx", X,
                                            task=pred.objective)  # fmt: skip
    report["verify"] = {k: {x: v[x] for x in ("rows", "max_abs_diff", "agreement")}
                        for k, v in checks.items()}  # fmt: skip
    report["passed"] = all(v["agreement"] >= AGREEMENT_TARGET["tabular"] for v in checks.values())
    report["input"] = {"name": "input", "features": pred.features.feature_names,
                       "categorical": pred.features.categorical,
                       "note": "the feature matrix of features.json (float32, NaN = missing)"}  # fmt: skip
    write_json_atomic(out / "export_report.json", report)
    return report


def export_classical(folder: Path, fmt: str, out: Path, texts: list[str] | None,
                     check_rows: int = 2000) -> dict[str, Any]:  # fmt: skip
    from zimo.classical.model import ClassicalPredictor, normalise
    from zimo.tabular.onnx_export import export_text_classifier_onnx

    if fmt != "onnx":
        raise ConfigError(f"format {fmt!r} does not apply to a classical sub-model", "use onnx")
    if not texts:
        raise ZimoError("no test texts to check the ONNX export against", "run `zimo build` first")
    cp = ClassicalPredictor(folder)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "zimo_model.json", out / "zimo_model.json")
    shutil.copyfile(folder / "label_task.json", out / "label_task.json")
    check = export_text_classifier_onnx(cp.model, normalise(texts[:check_rows]), out / "model.onnx")
    report = {
        "format": "onnx",
        "output": str(out),
        "kind": "classical",
        "verify": {"onnxruntime": {k: check[k] for k in ("rows", "max_abs_diff", "agreement")}},
        "passed": check["agreement"] >= AGREEMENT_TARGET["classical"],
        "input": {
            "name": "text",
            "note": "lower-cased, whitespace collapsed to one space "
            "(zimo.tabular.onnx_export.normalize_text) before the graph",
        },  # fmt: skip
    }
    write_json_atomic(out / "export_report.json", report)
    return report


def export_analytic_project(project_dir: str | Path, formats: list[str] | None,
                            output: Path | None) -> list[dict[str, Any]]:  # fmt: skip
    """Export a project's primary analytic sub-model in each format (CLI entry)."""
    project = load_project(project_dir)
    cfg = project.config.export_settings()
    train_dir = artifact_path(project.root, "train")
    if train_dir is None or not (train_dir / MODEL_META).is_file():
        raise ZimoError(f"project {project.name!r} has no trained model to export",
                        f"train it first: `zimo build {project_dir}`")  # fmt: skip
    split_dir = artifact_path(project.root, "split")
    root = (
        Path(output)
        if output
        else (Path(cfg.output) if cfg.output else Layout(project.root).exports)
    )
    return [_export_one(project, train_dir, split_dir, f, root / f if not output or len(formats or cfg.formats) > 1 else root, cfg)
            for f in (formats or cfg.formats)]  # fmt: skip


def _export_one(project, train_dir: Path, split_dir: Path | None, fmt: str, out: Path,
                cfg: AnalyticExportConfig) -> dict[str, Any]:  # fmt: skip
    meta = SubModelMeta.read(train_dir)
    if meta.kind == "image":
        from zimo.image.export import export_image
        from zimo.stages.image import test_pixels

        pixels = test_pixels(train_dir, split_dir) if split_dir else None
        return export_image(train_dir, fmt, out, pixels, cfg.check_rows)
    if meta.kind == "tabular":
        test = pd.read_parquet(split_dir / "test.parquet") if split_dir else None
        return export_tabular(train_dir, fmt, out, test, cfg.check_rows)
    if meta.kind == "classical":
        from zimo.dataset_io import read_records

        texts = [r["text"] for r in read_records(split_dir / "test.parquet")] if split_dir else None
        return export_classical(train_dir, fmt, out, texts, cfg.check_rows)
    raise ConfigError(f"format {fmt!r} is for analytic sub-models", "use hf, gguf or ollama")


def run_stage(ctx) -> Any:
    """The ``export`` build stage for a project whose primary sub-model is analytic."""
    cfg = ctx.project.config.export_settings()
    reports = [_export_one(ctx.project, ctx.input("train"), ctx.input("split"), f, ctx.work / f, cfg)
               for f in cfg.formats]  # fmt: skip
    failed = [r for r in reports if not r.get("passed")]
    if failed:
        raise ZimoError(f"the {failed[0]['format']} export disagrees with the model",
                        f"see {failed[0]['output']}/export_report.json")  # fmt: skip
    return StageResult(rows={"exports": len(reports)},
                       summary={r["format"]: r.get("verify") for r in reports})  # fmt: skip
