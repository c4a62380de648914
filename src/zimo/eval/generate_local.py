"""Answers from a local model: batched greedy decoding through the tokenizer's chat template,
stopped at the end-of-turn token (or its spelled-out text), with a ``max_new_tokens`` cap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from zimo.eval.generate_items import Generation, Messages

if TYPE_CHECKING:  # (zimo.infer imports torch: not at import time)
    from zimo.infer.penalties import Penalties


def render_chat_prompt(tokenizer: Any, messages: Messages) -> str:
    """The prompt text for ``messages`` through the tokenizer's chat template.

    Tokenizers without a template get Zimo's ChatML fallback (:mod:`zimo.prompts`), the same
    one training uses, so the evaluated prompt is token for token the trained one.
    """
    from zimo.prompts import ensure_chat_template

    ensure_chat_template(tokenizer)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _stop_ids(tokenizer: Any, model: Any) -> list[int]:
    """End-of-turn token ids: eos plus the chat template's turn terminators when present."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for v in (tokenizer.eos_token_id, gen_eos):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, list | tuple):
            ids.update(int(x) for x in v)
    vocab = tokenizer.get_vocab()
    for tok in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
        if tok in vocab:
            ids.add(int(vocab[tok]))
    return sorted(ids)


# Turn markers that a base model may spell out as ordinary text (no special token for them in
# its vocabulary, e.g. ChatML's <|im_end|> under a Gemma tokenizer): the answer ends there.
# ChatML markers are matched by prefix, so misspelt ones ("<|im_start>") end it too.
STOP_TEXTS = ("<|im_end", "<|im_start", "<end_of_turn>", "<start_of_turn>", "<|endoftext|>")


def _cut_at_stop_text(text: str) -> str:
    """The answer before the first spelled-out turn marker (or a marker cut off at the end)."""
    cut = min((i for i in (text.find(s) for s in STOP_TEXTS) if i >= 0), default=len(text))
    text = text[:cut]
    for s in STOP_TEXTS:  # max_new_tokens may end the answer in the middle of a marker
        for k in range(len(s) - 1, 1, -1):
            if text.endswith(s[:k]):
                text = text[:-k]
                break
    return text.strip()


def _spelled_stop_kwargs(tokenizer: Any, rendered: str) -> dict[str, Any]:
    """``generate`` kwargs that stop at turn markers the template spells as ordinary tokens.

    Only when the rendered prompt uses a marker that is not one token of the vocabulary (the
    ChatML fallback under a Gemma tokenizer): then a base model that "answers" with marker after
    marker would otherwise run to ``max_new_tokens``. Where markers are special tokens, their
    ids already stop generation and string matching would only cost time (~10%).
    """
    vocab = tokenizer.get_vocab()
    full = {"<|im_end": "<|im_end|>", "<|im_start": "<|im_start|>"}
    spelled = [s for s in STOP_TEXTS if s in rendered and full.get(s, s) not in vocab]
    return {"stop_strings": list(STOP_TEXTS), "tokenizer": tokenizer} if spelled else {}


def generate_local(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Messages],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    max_prompt_tokens: int = 1024,
    penalties: Penalties | None = None,
) -> list[Generation]:
    """Greedy answers from a local causal LM for chat ``prompts``, batched, in input order.

    Prompts are rendered with the chat template, left-padded, and sorted by length so each
    batch pads little; generation stops at an end-of-turn token or ``max_new_tokens``.
    ``penalties`` discourage tokens the answer has already used (not the prompt's, so an
    answer may still quote the question); see :mod:`zimo.infer.penalties`.
    """
    import torch
    from transformers import LogitsProcessorList

    from zimo.infer.penalties import AnswerPenaltyProcessor

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    tokenizer.truncation_side = "left"  # an over-long prompt loses its start, not its question
    texts = [render_chat_prompt(tokenizer, list(p)) for p in prompts]
    enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_prompt_tokens)[
        "input_ids"
    ]
    # No extra special tokens: the rendered template holds BOS where the base wants it (as in
    # training, see zimo.prompts).
    order = np.argsort([len(x) for x in enc], kind="stable")
    out: list[Generation | None] = [None] * len(texts)
    stop = _stop_ids(tokenizer, model)
    spelled = _spelled_stop_kwargs(tokenizer, texts[0] if texts else "")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer.pad(
                {"input_ids": [enc[i] for i in idx]}, padding=True, return_tensors="pt"
            )
            procs = LogitsProcessorList()
            if penalties is not None and penalties.active:
                procs.append(AnswerPenaltyProcessor(penalties, batch["input_ids"].shape[1]))
            gen = model.generate(
                **batch,
                logits_processor=procs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop or None,
                pad_token_id=tokenizer.pad_token_id,
                **spelled,
            )
            new = gen[:, batch["input_ids"].shape[1] :]
            finished = set(stop) | {tokenizer.pad_token_id}
            for row, i in zip(new.tolist(), idx, strict=True):
                n_tok = 0
                for t in row:  # tokens generated for this row (finished rows are padded)
                    if t in finished:
                        n_tok += int(t in stop)  # the end-of-turn token was generated
                        break
                    n_tok += 1
                text = _cut_at_stop_text(tokenizer.decode(row[:n_tok], skip_special_tokens=True))
                out[i] = Generation(text or None, len(enc[i]), n_tok)
    return [g if g is not None else Generation(None) for g in out]


def local_answerer(
    model_name: str,
    adapter: str | None = None,
    *,
    max_new_tokens: int = 128,
    loaded: tuple[Any, Any] | None = None,
    without_adapter: bool = False,
    penalties: Penalties | None = None,
) -> Callable[[list[Messages]], list[Generation]]:
    """A ``batch_answer`` function for :func:`run_system` from a model preset (+ adapter).

    ``loaded`` reuses an already loaded ``(model, tokenizer)``; with ``without_adapter`` a PEFT
    model answers with its adapter switched off, i.e. as the untuned base (one model in memory
    serves both the sub-model and the zero-shot base).
    """
    import contextlib

    if loaded is None:
        from zimo.models import load_causal_lm

        loaded = load_causal_lm(model_name, adapter=adapter)
    model, tok = loaded

    def answer(batch: list[Messages]) -> list[Generation]:
        ctx = model.disable_adapter() if without_adapter else contextlib.nullcontext()
        with ctx:
            return generate_local(
                model,
                tok,
                batch,
                max_new_tokens=max_new_tokens,
                batch_size=len(batch),
                penalties=penalties,
            )

    return answer


def progress_bar(enabled: bool, total: int, label: str):
    if not enabled or total < 2:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    prog = Progress(
        "[bold]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    )
    task = prog.add_task(label, total=total)
    prog.start()
    return prog, task
