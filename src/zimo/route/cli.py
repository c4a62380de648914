"""CLI: ``zimo route fit <project>`` and ``zimo route eval <project>`` (thin over the library).

Both read the project's ``route:`` section; the outcome data comes from ``route.outcomes`` or
``--outcomes``. The fitted router goes to ``<project>/.zimo/route/`` unless ``--out`` says
otherwise.
"""

from __future__ import annotations

from pathlib import Path

import typer

from zimo.errors import ConfigError
from zimo.workspace import Layout


def _load(project, outcomes: Path | None):
    """``(project, route config, outcomes)``; ``project`` is a folder or a loaded project."""
    from zimo.config import load_project
    from zimo.route.config import parse_route_config
    from zimo.route.outcomes import load_outcome_csvs

    proj = load_project(project) if isinstance(project, Path | str) else project
    cfg = parse_route_config(proj.config.route)
    src = outcomes or (Path(proj.root) / cfg.outcomes if cfg.outcomes else None)
    if src is None:
        raise ConfigError(
            "no outcome data for the router",
            "set route.outcomes in zimo.yaml or pass --outcomes <csv or folder>",
        )
    return proj, cfg, load_outcome_csvs(src, cfg.tier_names)


def register(app: typer.Typer) -> None:
    """Add the ``route`` command group (``fit``, ``eval``) to ``app``."""
    route_app = typer.Typer(help="Learn and evaluate the router for model 'auto'.")
    app.add_typer(route_app, name="route")

    @app.command("flywheel")
    def flywheel_cmd(
        project: Path = typer.Argument(..., help="project folder with zimo.yaml"),
        log: Path | None = typer.Option(None, help="request log (default: the project's)"),
        upstream: str | None = typer.Option(None, help="OpenAI-compatible URL of the big tier"),
    ) -> None:
        """Turn the big tier's logged answers into training rows, retrain, recalibrate."""
        from rich.console import Console

        from zimo.flywheel import run_flywheel

        r = run_flywheel(project, log_path=log, upstream_url=upstream)
        Console().print(
            f"flywheel round {r['round']}: {r['new_rows']} new teacher rows ({r['rows']} in "
            f"all), retrained {', '.join(r['retrained']) or 'nothing'}, thresholds "
            f"{ {k: round(v, 4) for k, v in r['thresholds'].items()} }"
        )

    @route_app.command("fit")
    def fit_cmd(
        project: Path = typer.Argument(..., help="project folder with zimo.yaml"),
        outcomes: Path | None = typer.Option(None, help="outcome CSV / folder (prompt,<tier>...)"),
        out: Path | None = typer.Option(None, help="where to save the router"),
        upstream: str | None = typer.Option(
            None, help="cascade: OpenAI-compatible URL of the big tier (else serve.upstream)"
        ),
    ) -> None:
        """Fit the router on outcome data (or calibrate a cascade) to route.target."""
        from rich.console import Console

        from zimo.config import load_project
        from zimo.route.router import fit_router

        # Loaded once: zimo.yaml is validated in full on every load.
        loaded = load_project(project)
        if loaded.config.is_cascade():
            from zimo.route.live import fit_live_cascade

            con = Console()
            res = fit_live_cascade(loaded, upstream_url=upstream, console=con)
            dev = res["dev"]
            con.print(
                f"cascade thresholds { {k: round(v, 4) for k, v in res['thresholds'].items()} }; "
                f"on {sum(res['calibration_rows'].values())} calibration rows: quality "
                f"{dev['quality_vs_best_tier']:.4f} of the best tier, shares "
                f"{[round(x, 3) for x in dev['share']]}, cost {dev['cost_per_1k']:.4g}/1k"
            )
            return

        proj, cfg, data = _load(loaded, outcomes)
        out_dir = out or Layout(proj.root).route_dir
        router = fit_router(
            data, cfg, out_dir, embed_cache_path=out_dir / "embeddings.sqlite", progress=True
        )
        p = router.meta["calibration"]
        cx = router.meta["cross_fitted"]
        Console().print(
            f"router [bold]{cfg.router.kind}[/]"
            + (f" on {router.meta['embedder']}" if router.meta.get("embedder") else "")
            + f" saved to {out_dir}: threshold "
            f"{router.threshold:.4f}; held-out quality {p['quality_ratio']:.3f} of "
            f"{cfg.tiers[-1].name}, cost {p['cost_per_1k']:.4g}/1k, shares "
            f"{dict(zip(cfg.tier_names, [round(s, 3) for s in p['share']], strict=True))}; "
            f"APGR {cx['apgr']:.3f}, CPT(50%) {cx['cpt50']:.3f}"
        )

    @route_app.command("eval")
    def eval_cmd(
        project: Path = typer.Argument(..., help="project folder with zimo.yaml"),
        outcomes: Path | None = typer.Option(None, help="held-out outcome CSV / folder"),
        router_dir: Path | None = typer.Option(None, "--router", help="fitted router folder"),
        out: Path | None = typer.Option(None, help="where to write eval.json and curve.png"),
    ) -> None:
        """Evaluate the fitted router: APGR, CPT(50%/80%), random and oracle, the curve plot."""
        from rich.console import Console
        from rich.table import Table

        from zimo.route.router import Router, evaluate_router

        proj, cfg, data = _load(project, outcomes)
        rdir = router_dir or Layout(proj.root).route_dir
        router = Router.load(rdir, embed_cache_path=rdir / "embeddings.sqlite")
        res = evaluate_router(router, data, out or rdir)
        table = Table(title=f"router on {len(data)} prompts")
        for col in ("router", "APGR", "CPT(50%)", "CPT(80%)"):
            table.add_column(col)
        for name in ("router", "random", "oracle"):
            m = res[name]
            table.add_row(name, f"{m['apgr']:.3f}", f"{m['cpt50']:.3f}", f"{m['cpt80']:.3f}")
        con = Console()
        con.print(table)
        op = res["operating_point"]
        con.print(
            f"at the calibrated threshold: quality {op['quality_ratio']:.3f} of the strongest, "
            f"cost {op['cost_per_1k']:.4g}/1k, shares {op['share']}; plot: {(out or rdir)}/curve.png"
        )
