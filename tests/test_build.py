"""The build system: artifact ids, skipping fresh stages, forcing, status, atomic artifacts."""

from __future__ import annotations

import json

from project_fixtures import run_zimo
from zimo.build import build, status
from zimo.dataset_io import read_records
from zimo.workspace import Workspace


def test_build_to_split_then_rerun_skips(tiny_project):
    first = build(tiny_project, target="split")
    assert first["ran"] == ["ingest", "curate", "split"]
    again = build(tiny_project, target="split")
    assert again["ran"] == [] and again["skipped"] == ["ingest", "curate", "split"]
    ws = Workspace(tiny_project)
    split_dir = ws.artifact_dir("split", first["ids"]["split"])
    manifest = json.loads((split_dir / "manifest.json").read_text())
    assert manifest["inputs"] == {"curate": first["ids"]["curate"]}
    assert manifest["config"]["split"]["seed"] == 7
    assert set(manifest["rows"]) == {"train", "dev", "test"}
    test = read_records(split_dir / "test.parquet")
    train = read_records(split_dir / "train.parquet")
    assert not {r["id"] for r in test} & {r["id"] for r in train}
    # stratified: both classes are in the test split in about the data's proportion (1/3 spam)
    spam = sum(r["label"] == "spam" for r in test) / len(test)
    assert 0.2 < spam < 0.45


def test_config_change_reruns_only_downstream(tiny_project):
    first = build(tiny_project, target="split")
    y = (tiny_project / "zimo.yaml").read_text()
    (tiny_project / "zimo.yaml").write_text(y.replace("seed: 7", "seed: 8"))
    second = build(tiny_project, target="split")
    assert second["ran"] == ["split"]
    assert second["ids"]["curate"] == first["ids"]["curate"]
    assert second["ids"]["split"] != first["ids"]["split"]
    st = status(tiny_project)
    assert {s["name"]: s["state"] for s in st["stages"]}["split"] == "fresh"


def test_data_change_changes_ingest_id(tiny_project):
    first = build(tiny_project, target="ingest")
    with open(tiny_project / "data" / "sms.tsv", "a", encoding="utf-8") as f:
        f.write("ham\tone more message for the corpus\n")
    second = build(tiny_project, target="ingest")
    assert second["ran"] == ["ingest"] and second["ids"]["ingest"] != first["ids"]["ingest"]


def test_force_reruns_stage_and_downstream(tiny_project):
    build(tiny_project, target="split")
    again = build(tiny_project, target="split", force=["curate"])
    assert again["ran"] == ["curate", "split"]


def test_quarantined_rows_are_counted(tiny_project):
    with open(tiny_project / "data" / "sms.tsv", "a", encoding="utf-8") as f:
        f.write("no tab in this row\nfraud\tlabel outside the set\n")
    rep = build(tiny_project, target="ingest")
    ws = Workspace(tiny_project)
    d = ws.artifact_dir("ingest", rep["ids"]["ingest"])
    rejects = read_records(d / "rejects.parquet")
    assert len(rejects) == 2
    assert json.loads((d / "manifest.json").read_text())["rows"]["rejects"] == 2


def test_status_json_contract_before_build(tiny_project):
    r = run_zimo("status", tiny_project, "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert [s["name"] for s in st["stages"]] == ["ingest", "curate", "split", "train", "eval"]
    assert all(s["state"] == "missing" and len(s["artifact"]) == 16 for s in st["stages"])
    assert st["metrics"] == {}


def test_unknown_stage_is_config_error(tiny_project):
    r = run_zimo("build", tiny_project, "--force", "trian")
    assert r.returncode == 2 and "unknown stage 'trian'" in r.stderr


def test_missing_data_file_is_one_line(tiny_project):
    (tiny_project / "data" / "sms.tsv").unlink()
    r = run_zimo("build", tiny_project)
    assert r.returncode == 2, r.stderr
    assert "does not exist" in r.stderr and "data.path" in r.stderr
    assert "Traceback" not in r.stderr


def test_read_json_optional_gives_an_empty_object_for_missing_or_bad_files(tmp_path):
    from zimo.fileio import read_json_optional, write_json_atomic

    good = tmp_path / "good.json"
    write_json_atomic(good, {"labels": ["ham", "spam"]})
    assert read_json_optional(good) == {"labels": ["ham", "spam"]}
    assert read_json_optional(tmp_path / "missing.json") == {}
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    assert read_json_optional(tmp_path / "broken.json") == {}
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    assert read_json_optional(tmp_path / "list.json") == {}
