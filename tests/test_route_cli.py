"""`zimo route fit` / `zimo route eval` through typer, on a real project folder."""

from __future__ import annotations

import json

import pytest
import typer
import yaml
from typer.testing import CliRunner

from route_fixtures import small_outcome_dir
from zimo.errors import ZimoError
from zimo.route.cli import register


@pytest.fixture()
def project(tmp_path):
    small_outcome_dir(tmp_path / "outcomes", per_subject=50)
    (tmp_path / "data.csv").write_text("text,label\nhello,ham\nwin cash,spam\n", encoding="utf-8")
    cfg = {
        "name": "route-test",
        "task": "label",
        "labels": ["ham", "spam"],
        "data": {"path": "data.csv"},
        "route": {
            "tiers": [
                {"name": "weak", "price_per_1k_tokens": 0.0006},
                {"name": "strong", "price_per_1k_tokens": 0.01},
            ],
            "target": {"quality": 0.95},
            "router": {"kind": "features", "folds": 3},
            "outcomes": "outcomes",
        },
    }
    (tmp_path / "zimo.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return tmp_path


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, as in zimo.cli
        pass

    register(app)
    return app


def test_fit_then_eval(project):
    runner = CliRunner()
    res = runner.invoke(_app(), ["route", "fit", str(project)])
    assert res.exit_code == 0, res.output
    assert "threshold" in res.output and (project / ".zimo/route/router.joblib").exists()
    res = runner.invoke(_app(), ["route", "eval", str(project)])
    assert res.exit_code == 0, res.output
    assert "oracle" in res.output and "APGR" in res.output
    ev = json.loads((project / ".zimo/route/eval.json").read_text())
    assert ev["random"]["apgr"] == pytest.approx(0.5)
    assert (project / ".zimo/route/curve.png").exists()


def test_missing_outcomes_is_a_config_error(project):
    cfg = yaml.safe_load((project / "zimo.yaml").read_text())
    del cfg["route"]["outcomes"]
    (project / "zimo.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    res = CliRunner().invoke(_app(), ["route", "fit", str(project)])
    assert isinstance(res.exception, ZimoError) and "--outcomes" in res.exception.one_line()
