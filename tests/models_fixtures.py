"""Shared, module-scoped loading of the embedded gecko model for model/infer/train tests."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def gecko():
    """(model, tokenizer) of the embedded gecko base, loaded once per test session."""
    import torch

    from zimo.models import load_causal_lm

    torch.manual_seed(0)
    # One intra-op thread: on a busy 2-core box two OpenMP threads spin-wait on each other and
    # run several times slower than one (measured); on a quiet box the loss is small.
    torch.set_num_threads(1)
    return load_causal_lm("gecko")


SMS = [
    ("ham", "Ok lar... Joking wif u oni..."),
    ("spam", "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461"),
    ("ham", "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight"),
    (
        "spam",
        "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121",
    ),
    ("ham", "Even my brother is not like to speak with me. They treat me like aids patent."),
    (
        "spam",
        "URGENT! You have won a 1 week FREE membership in our £100,000 Prize Jackpot! Txt CLAIM",
    ),
    ("ham", "Is that seriously how you spell his name?"),
    ("spam", "SIX chances to win CASH! From 100 to 20,000 pounds txt> CSH11 and send to 87575."),
]
