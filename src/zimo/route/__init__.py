"""Routing and cascades: send each request to the cheapest tier that is good enough.

Pre-call routing (``model: "auto"``)::

    from zimo.route import RouteConfig, Router, evaluate_router, fit_router, load_outcome_csvs

    cfg = RouteConfig.model_validate(project.config.route)      # the zimo.yaml `route:` section
    data = load_outcome_csvs("outcomes/", cfg.tier_names)       # prompt,<tier>... per subject
    router = fit_router(data, cfg, ".zimo/route")               # cross-fitted + calibrated
    tier, score = Router.load(".zimo/route").decide(prompt)     # in the server, per request
    report = evaluate_router(router, held_out, "reports/route") # APGR, CPT, curve.png

Post-call cascades (label tasks: classical → sub-model → upstream)::

    from zimo.route import calibrate_cascade, label_margin
    cascade = calibrate_cascade(conf_dev, correct_dev, prices, ["tfidf", "gecko", "upstream"])
    if cascade.accept("gecko", label_margin(probs)[0]): ...     # else escalate

Importing this package is cheap: the names below are resolved on first use (PEP 562), so the CLI
plugin (``zimo.route.cli``) and ``zimo --help`` never import scikit-learn, torch or
sentence-transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> submodule that defines it
_EXPORTS = {
    "TargetUnreachable": "calibrate",
    "assign_tiers": "calibrate",
    "choose_threshold": "calibrate",
    "Cascade": "cascade",
    "agreement": "cascade",
    "calibrate_cascade": "cascade",
    "cascade_metrics": "cascade",
    "label_margin": "cascade",
    "max_prob": "cascade",
    "mean_logprob": "cascade",
    "neg_entropy": "cascade",
    "RouteConfig": "config",
    "TierConfig": "config",
    "parse_route_config": "config",
    "apgr": "metrics",
    "cpt": "metrics",
    "evaluate_scores": "metrics",
    "routing_curve": "metrics",
    "Outcomes": "outcomes",
    "load_outcome_csvs": "outcomes",
    "outcomes_from_records": "outcomes",
    "Router": "router",
    "evaluate_router": "router",
    "fit_router": "router",
}

__all__ = [
    "Cascade",
    "Outcomes",
    "RouteConfig",
    "Router",
    "TargetUnreachable",
    "TierConfig",
    "agreement",
    "apgr",
    "assign_tiers",
    "calibrate_cascade",
    "cascade_metrics",
    "choose_threshold",
    "cpt",
    "evaluate_router",
    "evaluate_scores",
    "fit_router",
    "label_margin",
    "load_outcome_csvs",
    "max_prob",
    "mean_logprob",
    "neg_entropy",
    "outcomes_from_records",
    "parse_route_config",
    "routing_curve",
]


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'zimo.route' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"zimo.route.{mod}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from zimo.route.calibrate import TargetUnreachable, assign_tiers, choose_threshold
    from zimo.route.cascade import (
        Cascade,
        agreement,
        calibrate_cascade,
        cascade_metrics,
        label_margin,
        max_prob,
        mean_logprob,
        neg_entropy,
    )
    from zimo.route.config import RouteConfig, TierConfig, parse_route_config
    from zimo.route.metrics import apgr, cpt, evaluate_scores, routing_curve
    from zimo.route.outcomes import Outcomes, load_outcome_csvs, outcomes_from_records
    from zimo.route.router import Router, evaluate_router, fit_router
