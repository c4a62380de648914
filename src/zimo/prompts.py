"""Prompts shared by training and inference, so both see exactly the same token sequences.

A label task is a two-turn chat: a short system prompt (SmolLM2's template otherwise inserts its
long default one, which costs ~20 tokens per row), a user turn with the instruction, the allowed
labels and the text, and an assistant turn that is exactly the label word followed by the
template's end-of-turn token. Training puts the loss on those answer tokens only; inference
compares the log-probabilities of the candidate answers, so there is no free-text parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zimo.errors import ZimoError

DEFAULT_SYSTEM = "You are a precise classifier. Reply with the label only."

# Zimo's own fallback template (ChatML) for bases whose tokenizer has none.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# Gemma-format fallback for Gemma bases shipped without a template (gecko-zh's GGUF, a
# pretrained, not instruction-tuned, model): its turn markers are single special tokens there,
# unlike ChatML's. The model's answer ends with the end-of-sequence token, not <end_of_turn>:
# pretraining never produced <end_of_turn> (in gecko-zh's base its logit ranks ~261,800th of
# 262,144 at the end of an answer), and LoRA on the linear layers could not lift it in a short
# run, so tuned models never stopped; <eos> ends every pretraining document and is learnt in a
# few steps. Generation stops at either token.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<start_of_turn>model\\n' + message['content'] + eos_token + '\\n' }}"
    "{% else %}{{ '<start_of_turn>user\\n' + message['content'] + '<end_of_turn>\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


def ensure_chat_template(tokenizer) -> bool:
    """Give ``tokenizer`` a fallback template if it has none (Gemma turns where the vocab has
    them, else ChatML); True if one was set."""
    if getattr(tokenizer, "chat_template", None):
        return False
    vocab = tokenizer.get_vocab()
    gemma = "<start_of_turn>" in vocab and "<end_of_turn>" in vocab
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE if gemma else FALLBACK_CHAT_TEMPLATE
    return True


def default_instruction(labels: list[str]) -> str:
    """The instruction used when the project config gives none."""
    return "Classify the text. Answer with exactly one of: " + ", ".join(labels) + "."


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    ensure_chat_template(tokenizer)
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _encode(tokenizer, text: str) -> list[int]:
    # The rendered template already holds BOS/special tokens where the base wants them.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass
class LabelPrompt:
    """Builds token ids for label prompts and answers with one tokenizer.

    ``label_ids[i]`` are the tokens of the assistant answer for ``labels[i]`` (the label word and
    the end-of-turn token), exactly as they follow the generation prompt, found by tokenizing a
    rendered conversation rather than the bare word, so BPE merges at the boundary are right.
    """

    tokenizer: object
    labels: list[str]
    instruction: str | None = None
    system: str | None = DEFAULT_SYSTEM
    max_text_tokens: int = 256
    label_ids: list[list[int]] = field(init=False)
    truncated: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not self.labels:
            raise ZimoError("a label task needs at least one label", "declare labels in zimo.yaml")
        if len(set(self.labels)) != len(self.labels):
            raise ZimoError(f"duplicate labels in {self.labels}", "list each label once")
        if self.instruction is None:
            self.instruction = default_instruction(self.labels)
        self.label_ids = [self._answer_ids(lab) for lab in self.labels]
        if len({tuple(x) for x in self.label_ids}) != len(self.labels):
            raise ZimoError(
                f"labels {self.labels} tokenize to identical answers", "use distinct label words"
            )

    # -- messages ---------------------------------------------------------------------------
    def messages(self, text: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs.append({"role": "user", "content": f"{self.instruction}\n\nText: {text}"})
        return msgs

    def _answer_ids(self, label: str) -> list[int]:
        probe = self.messages("x")
        prompt = _encode(self.tokenizer, _render(self.tokenizer, probe, True))
        full_text = _render(
            self.tokenizer, probe + [{"role": "assistant", "content": label}], False
        )
        full = _encode(self.tokenizer, full_text)
        if full[: len(prompt)] != prompt:
            # Template re-renders earlier turns differently when an answer follows: fall back to
            # the bare label tokens + EOS (still exact for the prompt we feed at inference).
            ids = _encode(self.tokenizer, label)
            return ids + [self.tokenizer.eos_token_id]
        ans = full[len(prompt) :]
        # Keep the label and the end-of-turn token; drop trailing newlines the template adds.
        while len(ans) > 1 and self.tokenizer.decode(ans[-1:]).strip() == "":
            ans = ans[:-1]
        if len(ans) == len(_encode(self.tokenizer, label)):  # template adds no end-of-turn
            ans = ans + [self.tokenizer.eos_token_id]
        return ans

    # -- ids --------------------------------------------------------------------------------
    def clip_text(self, text: str) -> tuple[str, bool]:
        """Truncate ``text`` to ``max_text_tokens`` tokens; returns (text, was_truncated)."""
        ids = _encode(self.tokenizer, text)
        if len(ids) <= self.max_text_tokens:
            return text, False
        return self.tokenizer.decode(ids[: self.max_text_tokens]), True

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of the prompt up to and including the assistant generation prompt."""
        text, cut = self.clip_text(text)
        self.truncated += int(cut)
        return _encode(self.tokenizer, _render(self.tokenizer, self.messages(text), True))

    def example(self, text: str, label: str) -> tuple[list[int], list[int]]:
        """Training example: ``(input_ids, targets)`` with targets aligned to the *next* token.

        ``input_ids`` = prompt + answer[:-1]; the loss positions are the last ``len(answer)``
        positions, whose next tokens are the answer tokens (returned as ``targets``).
        """
        try:
            ans = self.label_ids[self.labels.index(label)]
        except ValueError as e:
            raise ZimoError(
                f"label {label!r} is not one of {self.labels}", "fix the data or the labels list"
            ) from e
        return self.prompt_ids(text) + ans[:-1], list(ans)

    @property
    def first_tokens_distinct(self) -> bool:
        """True when the first answer token alone tells the labels apart (one-forward scoring)."""
        return len({ids[0] for ids in self.label_ids}) == len(self.labels)
