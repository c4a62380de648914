"""zimo.yaml validation: every error names the key and the fix, exit code 2 from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from project_fixtures import SMALL_YAML, run_zimo
from zimo.config import load_project
from zimo.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "zimo.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_valid_config_loads(tiny_project):
    p = load_project(tiny_project)
    assert p.config.labels == ["ham", "spam"]
    assert p.config.train.max_steps == 3
    assert p.config.split.test == 0.2


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda y: y.replace("max_steps: 3", "max_step: 3"), "did you mean 'max_steps'"),
        (lambda y: y.replace("seed: 7", "seed: seven"), "'split.seed'"),
        (lambda y: y.replace("positive_label: spam", "positive_label: fraud"), "positive_label"),
        (lambda y: y.replace("labels: [ham, spam]", "labels: [ham]"), "at least two labels"),
        (lambda y: y.replace("name: tiny-sms\n", ""), "missing key 'name'"),
        (lambda y: y + "colour: blue\n", "unknown key 'colour'"),
    ],
)
def test_config_errors_name_the_key(tmp_path, mutate, expect):
    _write(tmp_path, mutate(SMALL_YAML))
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path)
    assert expect in e.value.one_line()
    assert "\n" not in e.value.one_line()


def test_yaml_syntax_error_gives_line(tmp_path):
    _write(tmp_path, "name: x\ndata: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path)
    assert "line" in e.value.one_line() and "YAML" in e.value.one_line()


@pytest.mark.parametrize(
    "setup, expect",
    [
        (lambda t: t / "nope", "does not exist"),
        (lambda t: t, "no zimo.yaml"),
        (lambda t: _write(t, "name: x\ndata: {path: a.tsv\n"), "not valid YAML"),
        (lambda t: _write(t, SMALL_YAML.replace("task: label", "task: [1]")), "'task'"),
    ],
)
def test_cli_config_errors_are_one_line_exit_2(tmp_path, setup, expect):
    r = run_zimo("status", setup(tmp_path))
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_debug_shows_traceback(tmp_path):
    r = run_zimo("--debug", "status", tmp_path / "nope")
    assert r.returncode != 0
    assert "Traceback" in r.stderr


CHAT_YAML = """\
name: chat-proj
task: chat
data: {path: data.json, format: json}
eval:
  max_new_tokens: 64
  judge: teacher
"""


def test_chat_projects_take_the_generate_eval_keys(tmp_path):
    from zimo.eval.config import EvalConfig

    cfg = load_project(_write(tmp_path, CHAT_YAML)).config
    assert isinstance(cfg.eval, EvalConfig)
    assert cfg.eval.max_new_tokens == 64 and cfg.eval.judge == "teacher"
    with pytest.raises(ConfigError, match="eval.bogus"):
        load_project(_write(tmp_path, CHAT_YAML + "  bogus: 1\n"))
    # ... and label projects still refuse them, naming the key
    label = SMALL_YAML.replace(
        "  latency_samples: 2\n", "  latency_samples: 2\n  max_new_tokens: 64\n"
    )
    with pytest.raises(ConfigError, match="eval.max_new_tokens"):
        load_project(_write(tmp_path, label))
