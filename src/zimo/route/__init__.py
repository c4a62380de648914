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
"""

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
