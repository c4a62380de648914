"""Penalties on tokens the answer already used, the same in eval and in serving.

Greedy decoding of small models falls into loops (one phrase repeated to the token cap). Three
standard remedies, all counted over the *answer's* tokens only, so an answer may still quote
the question:

- ``repetition_penalty`` (CTRL, Keskar et al. 2019; vLLM's extension of the OpenAI API):
  a used token's logit is divided by the penalty if positive, multiplied if negative;
- ``frequency_penalty`` and ``presence_penalty`` (the OpenAI API's own parameters): a used
  token's logit drops by ``count × frequency_penalty + presence_penalty``. Unlike the other two,
  the frequency penalty grows with every repeat, so it also breaks a loop already under way.

Written here rather than taken from transformers because its ``RepetitionPenaltyLogitsProcessor``
covers the prompt (unless told its length) and it has no frequency/presence penalty; Zimo's
serving engine decodes token by token outside ``generate`` and needs the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Penalties:
    repetition: float = 1.0
    frequency: float = 0.0
    presence: float = 0.0

    @classmethod
    def of(cls, settings: Any) -> Penalties:
        """The penalties named by ``settings``' ``repetition_penalty``, ``frequency_penalty`` and
        ``presence_penalty`` (an eval config or a request's sampling parameters)."""
        return cls(
            settings.repetition_penalty, settings.frequency_penalty, settings.presence_penalty
        )

    def text(self) -> str:
        """The active penalties in words, e.g. ``frequency penalty 0.5``."""
        parts = [
            f"{name} penalty {v:g}"
            for name, v, off in (
                ("repetition", self.repetition, 1.0),
                ("frequency", self.frequency, 0.0),
                ("presence", self.presence, 0.0),
            )
            if v != off
        ]
        return ", ".join(parts) or "no penalty"

    @property
    def active(self) -> bool:
        return self.repetition != 1.0 or self.frequency != 0.0 or self.presence != 0.0

    def apply_row(self, logits: Any, answer_ids: Any) -> None:
        """Penalise, in place, one row of next-token ``logits`` (1-D) given the answer so far."""
        import torch

        if not self.active or len(answer_ids) == 0:
            return
        ids = torch.as_tensor(answer_ids, device=logits.device, dtype=torch.long)
        used, counts = torch.unique(ids, return_counts=True)
        sc = logits[used]
        if self.repetition != 1.0:
            sc = torch.where(sc > 0, sc / self.repetition, sc * self.repetition)
        if self.frequency or self.presence:
            sc = sc - counts.to(sc.dtype) * self.frequency - self.presence
        logits[used] = sc


class AnswerPenaltyProcessor:
    """A transformers logits processor applying :class:`Penalties` to the tokens generated
    after ``prompt_len`` (rows left-padded to one width, so one length fits all rows)."""

    def __init__(self, penalties: Penalties, prompt_len: int):
        self.penalties = penalties
        self.prompt_len = prompt_len

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        answer = input_ids[:, self.prompt_len :]
        if answer.shape[1] == 0:
            return scores
        scores = scores.clone()
        for r in range(scores.shape[0]):
            self.penalties.apply_row(scores[r], answer[r])
        return scores
