"""The synth stage inside `zimo build`: a real local teacher labels the unlabelled rows."""

from __future__ import annotations

from fake_openai import FakeOpenAI, last_user_text
from project_fixtures import SMALL_YAML, sms_subset
from zimo.build import build
from zimo.dataset_io import read_records
from zimo.workspace import Workspace


def _teacher(body):
    text = last_user_text(body).lower()
    spammy = any(w in text for w in ("free", "win", "prize", "claim", "txt", "call", "urgent"))
    return '{"label": "spam"}' if spammy else '{"label": "ham"}'


def _labelled_plus_unlabelled(root, n_unlabelled: int) -> None:
    """60 labelled SMS rows (40 ham, 20 spam) and ``n_unlabelled`` rows with an empty label."""
    rows = sms_subset(40, 20).splitlines()
    more = sms_subset(40 + n_unlabelled, 20 + n_unlabelled).splitlines()[41 : 41 + n_unlabelled]
    unlabelled = ["\t" + r.split("\t", 1)[1] for r in more]
    (root / "data").mkdir()
    (root / "data" / "sms.tsv").write_text("\n".join(rows + unlabelled) + "\n", "utf-8")


def _write_yaml(root, srv, extra: str) -> None:
    teacher = (
        f"teacher: {{base_url: '{srv.base_url}', model: '{srv.model}', api_key_env: TEACHER_KEY"
    )
    (root / "zimo.yaml").write_text(SMALL_YAML + teacher + extra, "utf-8")


def test_teacher_labels_unlabelled_rows_and_rerun_costs_nothing(tmp_path, monkeypatch):
    _labelled_plus_unlabelled(tmp_path, 10)
    monkeypatch.setenv("TEACHER_KEY", "sk-test")
    with FakeOpenAI(_teacher, api_key="sk-test") as srv:
        _write_yaml(
            tmp_path,
            srv,
            ", price_in_per_1k: 0.001, price_out_per_1k: 0.002}\nsynth: {mode: label}\n",
        )
        rep = build(tmp_path, target="split")
        assert rep["ran"] == ["ingest", "curate", "synth", "split"]
        calls = srv.count("/v1/chat/completions")
        assert calls >= 10
        ws = Workspace(tmp_path)
        split = ws.artifact_dir("split", rep["ids"]["split"])
        recs = sum((read_records(split / f"{p}.parquet") for p in ("train", "dev", "test")), [])
        teacher = [r for r in recs if r["meta"]["origin"] == "teacher"]
        assert len(teacher) == 10 and all(r["label"] in ("ham", "spam") for r in teacher)
        assert all(r["meta"]["generator"] == srv.model for r in teacher)
        assert len(recs) == 70
        # A forced rerun of synth answers from the cache: the teacher sees no new request.
        build(tmp_path, target="split", force=["synth"])
        assert srv.count("/v1/chat/completions") == calls


def test_guard_caps_teacher_share_of_training_mix(tmp_path, monkeypatch):
    _labelled_plus_unlabelled(tmp_path, 30)
    monkeypatch.setenv("TEACHER_KEY", "sk-test")
    with FakeOpenAI(_teacher, api_key="sk-test") as srv:
        _write_yaml(
            tmp_path,
            srv,
            "}\nsynth: {mode: label}\nguard: {max_synthetic_share: 0.2, policy: accumulate}\n",
        )
        rep = build(tmp_path, target="guard")
    assert rep["ran"] == ["ingest", "curate", "synth", "split", "guard"]
    ws = Workspace(tmp_path)
    g = ws.artifact_dir("guard", rep["ids"]["guard"])
    mix = read_records(g / "train.parquet")
    teacher = [r for r in mix if r["meta"]["origin"] == "teacher"]
    human = [r for r in mix if r["meta"]["origin"] == "human"]
    assert human and len(teacher) / len(mix) <= 0.2 + 1e-9
    left = read_records(g / "rejects.parquet")
    assert left and all("max_synthetic_share" in r["reject_reason"] for r in left)
    assert all("guard_score" in r for r in mix)
