"""Merge a PEFT LoRA adapter into its base model and check that nothing changed.

``merge_and_unload`` folds ``B @ A * scale`` into each base weight, in the base's own dtype.
We check the merged model against base+adapter on a fixed prompt set (max absolute logit
difference and identical greedy tokens) before anything is written, so a broken merge never
reaches a user's laptop. The merged model is saved as a plain transformers folder
(safetensors, tokenizer, generation config, chat template) that needs neither peft nor Zimo.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zimo.errors import ZimoError

# Short, fixed and varied (question, instruction, classification, Chinese, code) so that a
# broken merge or conversion shows up; the same set is used by every check in an export.
DEFAULT_PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Is this message spam? 'WINNER!! Claim your free prize now, call 09061701461'",
    "Summarise: The meeting was moved from Monday to Wednesday because the room was booked.",
    "请用一句话介绍你自己。",
    "List three fruits.",
    "def add(a, b):",
    "Translate to French: good morning",
]

# Tokens that end an answer in the chat formats Zimo's bases use. Engines (llama.cpp, Ollama,
# Zimo's server) stop generating there, so agreement checks count positions up to them.
_END_OF_ANSWER = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|endoftext|>", "<eos>", "</s>")

# Tolerance for merged vs base+adapter logits, per dtype: merging reorders float sums.
_MERGE_ATOL = {"torch.float32": 1e-3, "torch.float16": 5e-2, "torch.bfloat16": 2.5e-1}


@dataclass
class MergeResult:
    """The merged model and what the merge check found."""

    model: Any
    tokenizer: Any
    base_dir: Path
    adapter_dir: Path | None
    report: dict[str, Any] = field(default_factory=dict)
    # prompt ids + greedy continuations of the merged model on DEFAULT_PROMPTS, reused by the
    # GGUF verification so the reference is generated once per export
    reference: dict[str, Any] | None = None


def is_adapter_dir(path: Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def read_adapter_base(adapter_dir: Path) -> str | None:
    """The base model named in an adapter's config (``base_model_name_or_path``)."""
    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    return cfg.get("base_model_name_or_path")


def resolve_base_dir(base: str | os.PathLike) -> Path:
    """A local HF folder for a preset name, folder, .gguf or cached hub id (never downloads)."""
    from zimo.models import resolve_model_dir

    return Path(resolve_model_dir(base))


def chat_prompt_ids(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt as a one-turn chat, ready for the assistant's answer."""
    out = []
    for p in prompts:
        msgs = [{"role": "user", "content": p}]
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(p)["input_ids"]
        out.append(list(ids))
    return out


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Ids that end generation: the tokenizer's EOS, the generation config's EOS ids and the
    chat format's end-of-turn token."""
    ids: set[int] = set()
    eos = getattr(tokenizer, "eos_token_id", None)
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for x in [eos, *(gen_eos if isinstance(gen_eos, list) else [gen_eos])]:
        if x is not None:
            ids.add(int(x))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in _END_OF_ANSWER if t in vocab)
    return sorted(ids)


def greedy_continuations(model: Any, prompt_ids: list[list[int]], n: int) -> list[list[int]]:
    """``n`` greedy tokens after each prompt: the plain argmax, past EOS too.

    A hand-written loop rather than ``generate``: generate's logits processors (min length,
    EOS handling, repetition settings from generation_config) would change the argmax, and
    the checks compare raw top-1 tokens between engines.
    """
    import torch

    outs = []
    with torch.inference_mode():
        for ids in prompt_ids:
            out = model(input_ids=torch.tensor([ids]), use_cache=True)
            tokens: list[int] = []
            for _ in range(n):
                nxt = int(out.logits[0, -1].argmax())
                tokens.append(nxt)
                if len(tokens) == n:
                    break
                out = model(
                    input_ids=torch.tensor([[nxt]]),
                    past_key_values=out.past_key_values,
                    use_cache=True,
                )
            outs.append(tokens)
    return outs


def _pad_id(model: Any) -> int:
    cfg = model.config
    pad = getattr(cfg, "pad_token_id", None)
    if pad is None:
        eos = getattr(cfg, "eos_token_id", 0)
        pad = eos[0] if isinstance(eos, list) else eos
    return int(pad or 0)


def sequence_logits(model: Any, seqs: list[list[int]]) -> list[Any]:
    """Float32 logits for each full sequence (one forward pass each)."""
    import torch

    with torch.inference_mode():
        return [model(input_ids=torch.tensor([s])).logits[0].float() for s in seqs]


def merge_adapter(
    adapter_dir: str | os.PathLike,
    base: str | os.PathLike | None = None,
    *,
    prompts: list[str] | None = None,
    new_tokens: int = 16,
) -> MergeResult:
    """Load base + adapter, merge, and verify the merge on a fixed prompt set.

    ``base`` defaults to the adapter's ``base_model_name_or_path``. The base keeps the dtype
    its weights were saved in. The report holds ``max_abs_logit_diff``, the number of prompts
    whose greedy tokens are identical, and ``passed``.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir = Path(adapter_dir)
    if not is_adapter_dir(adapter_dir):
        raise ZimoError(
            f"{adapter_dir} is not a trained adapter (no adapter_config.json)",
            "train first (`zimo train <project>`) or point --adapter at the adapter/ folder",
        )
    base = base or read_adapter_base(adapter_dir)
    if not base:
        raise ZimoError(
            f"the adapter {adapter_dir} does not name its base model", "pass --base NAME"
        )
    base_dir = resolve_base_dir(base)
    tok = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="auto", local_files_only=True)
    dtype = model.dtype
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False).eval()
    if getattr(tok, "pad_token", None) is None:
        tok.pad_token = tok.eos_token
    _ensure_template(tok)
    prompt_ids = chat_prompt_ids(tok, prompts or DEFAULT_PROMPTS)
    with torch.inference_mode():
        ref_tokens = greedy_continuations(model, prompt_ids, new_tokens)
        seqs = [p + c for p, c in zip(prompt_ids, ref_tokens, strict=True)]
        ref_logits = sequence_logits(model, seqs)
        with model.disable_adapter():
            base_logits = sequence_logits(model, seqs)
        merged = model.merge_and_unload()
        merged.eval()
        new_logits = sequence_logits(merged, seqs)
    diff = max(float((a - b).abs().max()) for a, b in zip(ref_logits, new_logits, strict=True))
    # Greedy decoding of the merged model gives the same tokens iff its top token agrees at
    # every position of base+adapter's greedy continuation (teacher forcing: no 2nd generate).
    same = 0
    for p, c, lg in zip(prompt_ids, ref_tokens, new_logits, strict=True):
        pred = lg[len(p) - 1 : len(p) - 1 + len(c)].argmax(-1).tolist()
        same += int(pred == c)
    # How much the adapter moves the base: ~0 means an untrained (B = 0) adapter.
    change = max(float((a - b).abs().max()) for a, b in zip(ref_logits, base_logits, strict=True))
    wrong_dtype = sorted({str(p.dtype) for p in merged.parameters() if p.dtype != dtype})
    atol = _MERGE_ATOL.get(str(dtype), 1e-2)
    report = {
        "dtype": str(dtype).replace("torch.", ""),
        "prompts": len(prompt_ids),
        "new_tokens": new_tokens,
        "max_abs_logit_diff": diff,
        "tolerance": atol,
        "greedy_identical": same,
        "max_abs_logit_change_vs_base": change,
        "passed": diff <= atol and same == len(prompt_ids) and not wrong_dtype,
    }
    if wrong_dtype:
        report["dtype_changed_to"] = wrong_dtype
    merged.config.name_or_path = ""
    reference = None
    if same == len(prompt_ids):
        texts = [tok.decode(p) for p in prompt_ids]
        reference = {
            "prompt_ids": prompt_ids,
            "continuations": ref_tokens,
            "prompt_texts": texts,
            "stop_ids": stop_token_ids(tok, merged),
        }
    return MergeResult(merged, tok, base_dir, adapter_dir, report, reference)


def _ensure_template(tok: Any) -> None:
    """Give a template-less base (gecko-zh's GGUF has none) the one Zimo trains and serves it
    with, so the export's chat template, Modelfile and checks match the served sub-model."""
    try:
        from zimo.prompts import ensure_chat_template
    except ImportError:
        return
    ensure_chat_template(tok)


def load_full_model(model_dir: str | os.PathLike) -> MergeResult:
    """A fully fine-tuned (or already merged) HF folder: nothing to merge, load as is."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ZimoError(
            f"{model_dir} holds no trained model (no adapter_config.json or config.json)",
            "train first (`zimo train <project>`) or point --adapter at the adapter/ folder",
        )
    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    _ensure_template(tok)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype="auto", local_files_only=True
    ).eval()
    report = {"dtype": str(model.dtype).replace("torch.", ""), "merged": False, "passed": True}
    return MergeResult(model, tok, model_dir, None, report)


def save_merged(result: MergeResult, out_dir: str | os.PathLike) -> list[str]:
    """Save the merged model as a plain transformers folder; returns the files written."""
    from transformers import GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tok = result.model, result.tokenizer
    model.save_pretrained(out, safe_serialization=True)
    gen = _base_generation_config(result.base_dir) or GenerationConfig.from_model_config(
        model.config
    )
    gen.save_pretrained(out)
    tok.save_pretrained(out)
    template = getattr(tok, "chat_template", None)
    cfg_path = out / "tokenizer_config.json"
    # Keep the chat template inside tokenizer_config.json too: older transformers and other
    # loaders (vLLM, TGI) read it only from there, newer ones from chat_template.jinja.
    if template and cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        if "chat_template" not in cfg:
            cfg["chat_template"] = template
            cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False), encoding="utf-8")
    return sorted(p.name for p in out.iterdir() if p.is_file())


def _base_generation_config(base_dir: Path) -> Any:
    from transformers import GenerationConfig

    if (base_dir / "generation_config.json").is_file():
        try:
            return GenerationConfig.from_pretrained(str(base_dir))
        except (OSError, ValueError):
            return None
    return None
