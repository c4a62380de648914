"""`zimo guard ...`: score datasets for machine-written text, calibrate the detector."""

from __future__ import annotations

from pathlib import Path

import typer


def _config(
    project_yaml: Path | None,
    score: str | None,
    threshold: float | None,
    fpr: float | None,
    model: str | None,
    calibration: Path | None,
    style_adapter: str | None = None,
):
    import yaml
    from pydantic import ValidationError

    from zimo.errors import ConfigError
    from zimo.guard.config import GuardConfig

    section: dict = {}
    if project_yaml is not None:
        try:
            data = yaml.safe_load(Path(project_yaml).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read {project_yaml} ({e})", "pass a valid zimo.yaml") from e
        section = dict(data.get("guard") or {})
    overrides = {
        "score": score,
        "threshold": threshold,
        "target_fpr": fpr,
        "model": model,
        "calibration": calibration,
        "style_adapter": style_adapter,
    }
    section |= {k: v for k, v in overrides.items() if v is not None}
    try:
        return GuardConfig(**section)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"guard.{key}: {err['msg']}", "fix it in zimo.yaml or the option") from e


def register(app: typer.Typer) -> None:
    """Add the `guard` command group to the `zimo` CLI."""
    guard = typer.Typer(help="Pollution guard: detect machine-written text, cap synthetic data.")
    app.add_typer(guard, name="guard")

    @guard.command("score")
    def score_cmd(
        path: Path = typer.Argument(..., help="a .jsonl or .parquet file, or a project folder"),
        output: Path | None = typer.Option(None, "--output", "-o", help="output folder"),
        score: str | None = typer.Option(
            None, help="auto (each model's calibrated score) | combined | logrank | ..."
        ),
        threshold: float | None = typer.Option(None, help="flag above this (default: calibrated)"),
        target_fpr: float | None = typer.Option(None, help="false-positive rate to calibrate for"),
        model: str | None = typer.Option(None, help="auto | gecko | gecko-zh | a model path"),
        calibration: Path | None = typer.Option(
            None, help="a calibration JSON, or a folder of <model>.json files"
        ),
        style_adapter: str | None = typer.Option(
            None, help="machine-style adapter: auto (shipped) | off | a folder"
        ),
        text_field: str = typer.Option("text", help="column holding the text"),
        config: Path | None = typer.Option(None, help="a zimo.yaml whose guard: section to use"),
    ) -> None:
        """Score every record for "written by a model"; write rows + guard_score/guard_flag."""
        from rich.console import Console

        from zimo.guard.score_file import score_file

        if config is None and path.is_dir() and (path / "zimo.yaml").is_file():
            config = path / "zimo.yaml"
        cfg = _config(config, score, threshold, target_fpr, model, calibration, style_adapter)
        s = score_file(path, output, cfg, text_field=text_field)
        share = s["flagged_share_of_trusted"]
        Console().print(
            f"scored {s['n']} records: {s['n_flagged']} flagged"
            + (f" ({share:.1%} of {s['n_trusted']} scored)" if share is not None else "")
            + f"\n  data   {s['output']}\n  report {s['report']}"
        )
        for name, k in s.get("unjudged_by_model", {}).items():
            Console().print(
                f"  not judged: {k} records scored by {name}, which has no calibration "
                f"for this score (plain log-rank, never flagged); use --score auto, or fit "
                f"one with `zimo guard calibrate --model {name}`"
            )

    @guard.command("calibrate")
    def calibrate_cmd(
        dev: Path = typer.Argument(
            ..., help="labelled dev JSONL/Parquet: text + label (1=machine)"
        ),
        output: Path = typer.Option(..., "--output", "-o", help="calibration JSON to write"),
        model: str = typer.Option("gecko-zh", help="scorer model"),
        target_fpr: float = typer.Option(0.01, help="false-positive rate the threshold aims at"),
        token_budget: int = typer.Option(256),
        min_tokens: int = typer.Option(48),
        style_adapter: str = typer.Option(
            "auto", help="machine-style adapter: auto (shipped) | off | a folder"
        ),
        hidden_head: bool = typer.Option(
            False,
            help="add a second model on the scorer's hidden state to the combined score (same "
            "forward pass): strongest on the kind of text the dev split holds",
        ),
    ) -> None:
        """Fit thresholds (and the combined score) on a labelled dev split."""
        from rich.console import Console

        from zimo.guard.calibrate import calibrate_file

        cal = calibrate_file(
            dev,
            output,
            model,
            target_fpr,
            token_budget,
            min_tokens,
            style_adapter,
            hidden_head=hidden_head,
        )
        c = cal["scores"]
        Console().print(
            f"wrote {output}: "
            + ", ".join(f"{k} TPR {v['dev_tpr_at_target']:.2f}" for k, v in c.items())
            + f" at FPR {target_fpr:g} (in-sample)"
        )
