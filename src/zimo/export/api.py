"""``export_model``: a trained sub-model as merged weights, a GGUF file or an Ollama folder.

Everything is written into a hidden staging folder beside the output and renamed into place
only when complete, so an error (a full disk included) leaves no partial file behind and an
older export in the same place stays intact until the new one is whole.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from zimo import __version__
from zimo.errors import ConfigError, ZimoError
from zimo.export.gguf_writer import (
    QUANTS,
    check_quant,
    check_supported,
    disk_full_error,
    ensure_free_space,
    estimate_size,
    write_gguf,
)
from zimo.records import now_iso

FORMATS = ("hf", "gguf", "ollama")
REPORT_NAME = "export_report.json"


def _is_disk_full(e: BaseException | None) -> bool:
    for _ in range(10):  # follow the cause chain a few links, not forever
        if e is None:
            return False
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        # torch/safetensors wrap write errors in RuntimeError with the message only
        if "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _load(source: Path, base: str | None, new_tokens: int):
    from zimo.export.merge import is_adapter_dir, load_full_model, merge_adapter

    if not source.exists():
        raise ZimoError(
            f"nothing to export: {source} does not exist",
            "train first (`zimo train <project>`) or point --adapter at the adapter/ folder",
        )
    if is_adapter_dir(source):
        return merge_adapter(source, base, new_tokens=new_tokens)
    return load_full_model(source)


def _precheck_arch(source: Path, base: str | None) -> None:
    """Refuse an unsupported architecture before the (slow) merge."""
    from transformers import AutoConfig

    from zimo.export.merge import is_adapter_dir, read_adapter_base, resolve_base_dir

    if is_adapter_dir(source):
        b = base or read_adapter_base(source)
        if not b:
            return
        folder = resolve_base_dir(b)
    elif (source / "config.json").is_file():
        folder = source
    else:
        return
    check_supported(AutoConfig.from_pretrained(str(folder), local_files_only=True))


def _hf_reload_check(merged: Any, source_tok: Any, folder: Path) -> dict:
    """Reload the saved folder with plain transformers and compare logits with the merged model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zimo.export.merge import DEFAULT_PROMPTS, chat_prompt_ids, sequence_logits

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    reloaded = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    ids = chat_prompt_ids(tok, DEFAULT_PROMPTS[:3])
    same_ids = ids == chat_prompt_ids(source_tok, DEFAULT_PROMPTS[:3])
    a = sequence_logits(merged, ids)
    b = sequence_logits(reloaded, ids)
    diff = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
    tol = 1e-4 if merged.dtype == torch.float32 else 1e-2
    template_kept = bool(tok.chat_template) == bool(getattr(source_tok, "chat_template", None))
    return {
        "max_abs_logit_diff": diff,
        "tolerance": tol,
        "tokenizer_identical": same_ids,
        "chat_template": bool(tok.chat_template),
        "dtype": str(reloaded.dtype).replace("torch.", ""),
        "passed": diff <= tol and same_ids and template_kept,
    }


def _swap_into_place(staging: Path, out_dir: Path) -> None:
    from zimo.export.gguf_writer import current_umask

    # mkdtemp/mkstemp make 0700 folders and 0600 files; an export is meant to be shared
    # (Ollama's service user must read it), so give it the ordinary permissions.
    mask = current_umask()
    os.chmod(staging, 0o777 & ~mask)
    for p in staging.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_model(
    adapter_dir_or_model_dir: str | os.PathLike,
    base: str | None = None,
    fmt: str = "gguf",
    quant: str | None = "q8_0",
    out_dir: str | os.PathLike | None = None,
    label_texts: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    *,
    verify: bool = True,
    llamacpp: bool = True,
    new_tokens: int = 16,
) -> dict[str, Any]:
    """Export a trained sub-model; returns the report also written to ``export_report.json``.

    ``adapter_dir_or_model_dir``: a PEFT adapter folder (merged into ``base``, by default
    the base named in the adapter) or a full HF model folder. ``fmt``: ``hf`` (merged
    safetensors), ``gguf`` or ``ollama`` (GGUF + Modelfile). ``quant``: ``f16``, ``q8_0`` or
    ``q4_k_m`` (GGUF only). ``label_texts`` with ``metadata["labels"]`` (and optionally
    ``metadata["instruction"]``, ``system``, ``max_text_tokens``, ``positive_label`` and
    ``decision_threshold``, as in the sub-model's ``label_task.json``) adds the
    label-agreement check against the labels ``zimo serve`` would answer. ``metadata`` also feeds the
    model card: ``name``, ``task``, ``description``, ``intended_use``, ``data``
    (see :func:`zimo.export.card.data_summary`), ``eval`` (``{system: {metric: value}}``),
    ``base_license``.
    """
    from zimo.export.card import base_license, render_model_card
    from zimo.export.ollama import ollama_model_name
    from zimo.fileio import write_json_atomic, write_text_atomic

    meta = dict(metadata or {})
    quant = _check_format(fmt, quant)
    source = Path(adapter_dir_or_model_dir).expanduser()
    if fmt != "hf":
        _precheck_arch(source, base)
    default_name = source.resolve().parent.name if source.name == "adapter" else source.name
    name = ollama_model_name(str(meta.get("name") or default_name or "zimo"))
    tag = f"{name}-{fmt}" + (f"-{quant}" if quant else "")
    out_dir = Path(out_dir) if out_dir else Path.cwd() / tag
    out_dir = out_dir.expanduser().resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    result = _load(source, base, new_tokens)
    report: dict[str, Any] = {
        "zimo_version": __version__,
        "created": now_iso(),
        "name": name,
        "format": fmt,
        "quant": quant,
        "source": {
            "adapter": str(result.adapter_dir) if result.adapter_dir else None,
            "model": None if result.adapter_dir else str(source),
            "base": str(base or meta.get("base") or _adapter_base(source) or result.base_dir),
            "base_dir": str(result.base_dir),
        },
        "merge": result.report,
    }
    report["base_license"] = meta.get("base_license") or base_license(
        report["source"]["base"], result.base_dir
    )
    label_spec = _label_spec(meta, label_texts)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        files: dict[str, Any] = {}
        if fmt == "hf":
            need = int(estimate_size(result.model, "f16") * result.model.dtype.itemsize / 2)
            ensure_free_space(staging, need, f"the merged model in {out_dir}")
            from zimo.export.merge import save_merged

            files["hf"] = save_merged(result, staging)
            if verify:
                report["hf_reload"] = _hf_reload_check(result.model, result.tokenizer, staging)
        else:
            files = _write_gguf_files(result, staging, name, quant, fmt, meta, report, out_dir,
                                      label_spec, verify, llamacpp, new_tokens)  # fmt: skip
        report["files"] = files
        checks = [report["merge"].get("passed", True)]
        for part in ("hf_reload", "verify"):
            if part in report:
                checks.append(report[part]["passed"])
        report["verified"] = verify
        report["passed"] = all(checks)
        report["output"] = str(out_dir)
        write_text_atomic(staging / "README.md", render_model_card(report, meta))
        write_json_atomic(staging / REPORT_NAME, report)
        _swap_into_place(staging, out_dir)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, ZimoError):
            raise
        if _is_disk_full(e):
            free = shutil.disk_usage(out_dir.parent).free
            raise disk_full_error(f"the export to {out_dir}", None, free) from e
        raise
    return report


def _check_format(fmt: str, quant: str | None) -> str | None:
    """The quant to use for ``fmt`` (None for merged weights); a bad value is a one-line error
    before any slow work, as is a quant whose extra is missing."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", f"use one of {', '.join(FORMATS)}")
    if fmt == "hf":
        return None  # merged weights keep the base's dtype
    quant = quant or "q8_0"
    if quant not in QUANTS:
        raise ConfigError(f"unknown quant type {quant!r}", f"use one of {', '.join(QUANTS)}")
    check_quant(quant)
    return quant


def _label_spec(meta: dict[str, Any], label_texts: list[str] | None) -> dict[str, Any] | None:
    """The label-agreement check's inputs: the served prompt and decision rule
    (``label_task.json``) when the caller has them."""
    if not (label_texts and meta.get("labels")):
        return None
    from zimo.export.verify import LABEL_RULE_KEYS

    spec = {"labels": list(meta["labels"]), "instruction": meta.get("instruction"),
            "texts": list(label_texts)}  # fmt: skip
    spec.update({k: meta[k] for k in LABEL_RULE_KEYS if k in meta})
    return spec


def _write_gguf_files(result: Any, staging: Path, name: str, quant: str, fmt: str,
                      meta: dict[str, Any], report: dict[str, Any], out_dir: Path,
                      label_spec: dict[str, Any] | None, verify: bool, llamacpp: bool,
                      new_tokens: int) -> dict[str, Any]:  # fmt: skip
    """The GGUF file (and the Ollama folder), verified against the merged model."""
    from zimo.export.ollama import write_ollama_folder
    from zimo.export.verify import verify_gguf

    files: dict[str, Any] = {}
    gguf_name = f"{name}-{quant}.gguf"
    res = write_gguf(
        result.model,
        result.tokenizer,
        staging / gguf_name,
        quant,
        name=name,
        base_dir=result.base_dir,
        extra_metadata={"general.license": report["base_license"]}
        if report["base_license"]
        else None,
    )
    files.update(
        {"gguf": gguf_name, "size_bytes": res.size_bytes, "tensor_types": res.tensor_types}
    )
    report["gguf"] = {"arch": res.arch, "n_tensors": res.n_tensors}
    if verify:
        report["verify"] = verify_gguf(
            result.model,
            result.tokenizer,
            staging / gguf_name,
            quant,
            label_spec=label_spec,
            llamacpp=llamacpp,
            new_tokens=new_tokens,
            reference_=result.reference,
        )
    if fmt == "ollama":
        report["ollama"] = write_ollama_folder(
            staging,
            gguf_name,
            result.tokenizer,
            model_name=name,
            task=meta.get("task"),
            license_text=report["base_license"],
            command_dir=out_dir,
            label_task={k: meta[k] for k in ("labels", "instruction", "system") if k in meta}
            if meta.get("labels")
            else None,
        )
        files["modelfile"] = "Modelfile"
    return files


def _adapter_base(source: Path) -> str | None:
    from zimo.export.merge import is_adapter_dir, read_adapter_base

    return read_adapter_base(source) if is_adapter_dir(source) else None
