"""The cost–quality plot for reports: routers next to the random router and the oracle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from zimo.route.metrics import apgr, oracle_scores, routing_curve


def plot_curves(
    routers: dict[str, np.ndarray],
    q_cheap: np.ndarray,
    q_strong: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "cost–quality",
) -> Path:
    """PNG of quality vs share of strong-tier calls for each router's scores."""
    import matplotlib

    matplotlib.use("Agg")  # headless: reports are written on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    qw, qs = float(np.mean(q_cheap)), float(np.mean(q_strong))
    ax.plot([0, 1], [qw, qs], "--", color="grey", label="random (APGR 0.50)")
    oc = routing_curve(oracle_scores(q_cheap, q_strong), q_cheap, q_strong)
    ax.plot(oc["calls"], oc["quality"], ":", color="black", label=f"oracle (APGR {apgr(oc):.2f})")
    for name, scores in routers.items():
        c = routing_curve(scores, q_cheap, q_strong)
        ax.plot(c["calls"], c["quality"], label=f"{name} (APGR {apgr(c):.2f})")
    ax.axhline(qs, color="tab:red", lw=0.6)
    ax.axhline(qw, color="tab:blue", lw=0.6)
    ax.set_xlabel("share of calls to the strong tier")
    ax.set_ylabel("quality (mean outcome)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
