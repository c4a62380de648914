"""Training mixes that keep machine-written data under a cap (so models do not collapse).

A record counts as *synthetic* when its provenance says so (``meta.origin`` is teacher,
synthetic or log) or when it claims to be human but the detector flagged it (``guard_flag``).
Models trained on the output of models degrade over generations while keeping the original
human data alongside avoids it (Shumailov et al. 2024; Gerstgrasser et al. 2024), hence:

- ``policy: accumulate`` (default): every unflagged human record stays; synthetic records are
  admitted up to ``max_synthetic_share`` of the mix; the rest is left out with a reason
  (flagged-human records go first, highest detector score first, then declared synthetic ones
  in a seeded random order so no single generator is favoured).
- ``policy: replace``: the mix is used as given; :func:`check_mix` then refuses it if it breaks
  the cap unless ``override=True``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from zimo.errors import ZimoError
from zimo.guard.config import GuardConfig
from zimo.records import SYNTHETIC_ORIGINS


class SyntheticShareError(ZimoError):
    """A training mix over ``max_synthetic_share``; ``record_ids`` are the ones over the cap."""

    def __init__(self, message: str, hint: str, record_ids: list[str]):
        super().__init__(message, hint)
        self.record_ids = record_ids


def _meta(r: dict) -> dict:
    m = r.get("meta")
    return m if isinstance(m, dict) else {}


def origin_of(r: dict) -> str:
    return str(_meta(r).get("origin") or "human")


def flagged(r: dict) -> bool:
    """Detector flag from ``guard_flag`` (top level, as `zimo guard score` writes) or meta."""
    v = r.get("guard_flag", _meta(r).get("guard_flag"))
    return bool(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else False


def synthetic_reason(r: dict) -> str | None:
    """Why ``r`` counts as synthetic (None = human)."""
    o = origin_of(r)
    if o in SYNTHETIC_ORIGINS:
        gen = _meta(r).get("generator")
        return f"declared origin={o}" + (f" (generator {gen})" if gen else "")
    if flagged(r):
        s = r.get("guard_score", _meta(r).get("guard_score"))
        return "flagged as machine-written" + (
            f" (guard_score {float(s):.2f})" if s is not None else ""
        )
    return None


@dataclass
class MixReport:
    """What went into a mix and what was left out."""

    policy: str
    max_synthetic_share: float
    n_input: int
    n_mix: int
    n_human: int
    n_synthetic: int
    synthetic_share: float
    by_origin: dict[str, int]
    n_flagged_human: int
    left_out: list[dict[str, str]] = field(default_factory=list)

    @property
    def over_cap(self) -> bool:
        return self.synthetic_share > self.max_synthetic_share + 1e-12

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"over_cap": self.over_cap}


def _share(n_syn: int, n_total: int) -> float:
    return n_syn / n_total if n_total else 0.0


def max_synthetic(n_human: int, cap: float) -> int:
    """Most synthetic records that fit beside ``n_human`` human ones under share ``cap``."""
    if cap >= 1:
        return 1 << 62
    # s / (h + s) <= cap  <=>  s <= cap * h / (1 - cap); the epsilon guards float rounding.
    return int(math.floor(cap * n_human / (1 - cap) + 1e-9))


def build_mix(
    records: list[dict], config: GuardConfig | None = None, seed: int = 0
) -> tuple[list[dict], MixReport]:
    """Build the training mix under the configured policy; returns ``(mix, report)``."""
    cfg = config or GuardConfig()
    human, synthetic = [], []
    for r in records:
        (synthetic if synthetic_reason(r) else human).append(r)
    left_out: list[dict[str, str]] = []
    if cfg.policy == "accumulate":
        room = max_synthetic(len(human), cfg.max_synthetic_share)
        flagged_h = [r for r in synthetic if origin_of(r) not in SYNTHETIC_ORIGINS]
        declared = [r for r in synthetic if origin_of(r) in SYNTHETIC_ORIGINS]
        random.Random(seed).shuffle(declared)
        # Leave out the most suspicious undeclared text first: it is what pollutes a corpus.
        flagged_h.sort(key=lambda r: -float(r.get("guard_score") or 0.0))
        order = declared + flagged_h[::-1]  # admitted first ... left out first (reversed)
        admitted, dropped = order[:room], order[room:]
        keep_ids = {id(r) for r in admitted}
        for r in dropped:
            left_out.append(
                {
                    "id": str(r.get("id")),
                    "reason": f"over max_synthetic_share {cfg.max_synthetic_share:g}: "
                    + str(synthetic_reason(r)),
                }
            )
        # Keep the input order in the mix.
        mix = [r for r in records if not synthetic_reason(r) or id(r) in keep_ids]
    else:
        mix = list(records)
    n_syn = sum(1 for r in mix if synthetic_reason(r))
    report = MixReport(
        policy=cfg.policy,
        max_synthetic_share=cfg.max_synthetic_share,
        n_input=len(records),
        n_mix=len(mix),
        n_human=len(mix) - n_syn,
        n_synthetic=n_syn,
        synthetic_share=_share(n_syn, len(mix)),
        by_origin=dict(Counter(origin_of(r) for r in mix)),
        n_flagged_human=sum(1 for r in mix if origin_of(r) not in SYNTHETIC_ORIGINS and flagged(r)),
        left_out=left_out,
    )
    return mix, report


def check_mix(
    records: list[dict], config: GuardConfig | None = None, override: bool = False
) -> MixReport:
    """Refuse (:class:`SyntheticShareError`) a training mix over ``max_synthetic_share``,
    naming the records over the cap, unless ``override``. Returns the mix report."""
    cfg = config or GuardConfig()
    syn = [r for r in records if synthetic_reason(r)]
    n, n_syn = len(records), len(syn)
    n_h = n - n_syn
    report = MixReport(
        policy=cfg.policy,
        max_synthetic_share=cfg.max_synthetic_share,
        n_input=n,
        n_mix=n,
        n_human=n_h,
        n_synthetic=n_syn,
        synthetic_share=_share(n_syn, n),
        by_origin=dict(Counter(origin_of(r) for r in records)),
        n_flagged_human=sum(1 for r in syn if origin_of(r) not in SYNTHETIC_ORIGINS),
    )
    if n and n_syn == n and cfg.max_synthetic_share < 1 and not override:
        raise SyntheticShareError(
            f"the training mix has no human records ({n} synthetic, cap "
            f"{cfg.max_synthetic_share:.0%})",
            "add human-written data, or set guard.max_synthetic_share: 1 / override to train on "
            "synthetic data only (models trained only on model output degrade)",
            [str(r.get("id")) for r in syn],
        )
    if report.over_cap and not override:
        over = syn[max_synthetic(n_h, cfg.max_synthetic_share) :]
        ids = [str(r.get("id")) for r in over]
        kinds = Counter(str(synthetic_reason(r)).split(" (")[0] for r in over)
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise SyntheticShareError(
            f"the training mix is {report.synthetic_share:.1%} synthetic, over "
            f"guard.max_synthetic_share {cfg.max_synthetic_share:.0%}: {len(ids)} records over "
            f"the cap ({', '.join(f'{v} {k}' for k, v in kinds.items())}): {shown}",
            "use guard.policy: accumulate (keeps all human data and caps the rest), add human "
            "data, raise guard.max_synthetic_share, or override",
            ids,
        )
    return report
