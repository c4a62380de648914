"""Analytic sub-models end to end: a table project and a classical text project built with
the shipped CLI, served by a real server on 127.0.0.1, exported to ONNX and checked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from project_fixtures import ROOT, make_tiny_project, run_zimo
from serve_fixtures import LiveServer
from zimo.tabular.features import haversine_km


def _orders(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Delivery orders with raw columns (coordinates, a category, a timestamp, an id, junk)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "order_id": np.arange(n),
        "Restaurant_latitude": 22.7 + rng.random(n) * 0.2,
        "Restaurant_longitude": 75.8 + rng.random(n) * 0.2,
        "Delivery_location_latitude": 22.7 + rng.random(n) * 0.2,
        "Delivery_location_longitude": 75.8 + rng.random(n) * 0.2,
        "City": rng.choice(["Metro", "Urban", "Semi-Urban"], n),
        "courier": rng.choice([f"c{i}" for i in range(60)], n),
        "Order_Date": pd.date_range("2022-01-01", periods=n, freq="37min").astype(str),
        "constant": 1,
        "empty": "",
    })  # fmt: skip
    d = haversine_km(df.Restaurant_latitude, df.Restaurant_longitude,
                     df.Delivery_location_latitude, df.Delivery_location_longitude)  # fmt: skip
    hour = pd.to_datetime(df.Order_Date).dt.hour
    # Non-linear in distance and hour, so the trees have something a line does not.
    df["minutes"] = (12 + 0.4 * d**1.6 + np.where(df.City == "Metro", 8, 0)
                     + 6 * ((hour >= 18) & (hour <= 21)) + rng.normal(0, 1, n))  # fmt: skip
    return df


@pytest.fixture(scope="module")
def table_project(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tab")
    csv = tmp / "orders.csv"
    text = _orders().to_csv(index=False)
    text += "1,2,3\n"  # a ragged row: quarantined, not fatal
    csv.write_text(text, encoding="utf-8")
    proj = tmp / "eta"
    r = run_zimo("init", proj, "--template", "tabular", "--data", csv, "--target", "minutes")
    assert r.returncode == 0, r.stderr
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    return proj


@pytest.fixture(scope="module")
def text_project(tmp_path_factory) -> Path:
    from project_fixtures import SMALL_YAML

    yaml_text = SMALL_YAML.replace(
        "train:\n  base: gecko\n  method: lora\n  task: label\n  max_steps: 3\n  batch_size: 4\n",
        "train:\n  method: classical\n",
    ).replace("systems: [finetuned, base_zero_shot, tfidf_logreg]", "systems: [tfidf_logreg]")
    proj = make_tiny_project(tmp_path_factory.mktemp("txt"), 150, 60, yaml_text)
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    return proj


def test_table_build_infers_columns_and_beats_baselines(table_project: Path):
    yaml_text = (table_project / "zimo.yaml").read_text(encoding="utf-8")
    assert "order_id: excluded (id-like" in yaml_text
    assert "constant: excluded" in yaml_text and "empty: excluded (all values missing)" in yaml_text
    assert "Order_Date: datetime" in yaml_text and "haversine distance" in yaml_text
    st = json.loads(run_zimo("status", table_project, "--json").stdout)
    ev = st["metrics"]["eval"]
    assert ev["lightgbm"]["r2"] > 0.9
    assert ev["lightgbm"]["r2"] > ev["linear"]["r2"] > ev["baseline_mean"]["r2"]
    assert ev["lightgbm"]["mae"] < ev["linear"]["mae"]
    arts = table_project / ".zimo" / "artifacts"
    rejects = (next((arts / "ingest").iterdir()) / "rejects.jsonl").read_text().splitlines()
    assert len(rejects) == 1 and "fields, expected" in json.loads(rejects[0])["reason"]
    report = next((arts / "eval").iterdir()) / "report.html"
    html = report.read_text(encoding="utf-8")
    assert html.count("<img") >= 3 and "SHAP" in html and "id-like" in html
    metrics = json.loads((report.parent / "metrics.json").read_text())
    assert (
        "distance_km(Restaurant_latitude→Delivery_location_latitude)"
        in metrics["importance"]["gain"]
    )
    cov = metrics["systems"]["lightgbm"]["interval"]["coverage"]
    assert 0.6 < cov < 0.95  # an 80% interval


def test_table_build_is_deterministic(table_project: Path, tmp_path: Path):
    first = next((table_project / ".zimo" / "artifacts" / "train").iterdir()) / "model.txt"
    r = run_zimo("build", table_project, "--force", "train")
    assert r.returncode == 0, r.stderr
    again = next((table_project / ".zimo" / "artifacts" / "train").iterdir()) / "model.txt"
    assert first.read_text() == again.read_text()


@pytest.mark.parametrize(
    "target, extra, message",
    [
        ("nope", "", "target column 'nope' is not in the data"),
        ("City", "  objective: regression\n", "is not numeric"),
        ("constant", "", "one class only"),
    ],
)
def test_table_bad_target_is_one_line(tmp_path: Path, target, extra, message):
    csv = tmp_path / "t.csv"
    _orders(200).to_csv(csv, index=False)
    proj = tmp_path / "p"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "t.csv").write_bytes(csv.read_bytes())
    (proj / "zimo.yaml").write_text(
        f"name: p\ntask: tabular\ndata: {{path: data/t.csv}}\ntabular:\n  target: {target}\n{extra}"
    )
    r = run_zimo("build", proj)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("error:")]) == 1


def test_split_by_time_and_by_group(tmp_path: Path):
    from zimo.config import SplitConfig
    from zimo.stages.tabular import split_table
    from zimo.tabular.columns import infer_plan

    df = _orders(600)
    plan = infer_plan(df, "minutes")
    parts = split_table(df, plan, SplitConfig(dev=0.1, test=0.2, by="Order_Date"))
    t = pd.to_datetime(df.Order_Date)
    assert t.iloc[parts["train"]].max() < t.iloc[parts["dev"]].min()
    assert t.iloc[parts["dev"]].max() < t.iloc[parts["test"]].min()
    parts = split_table(df, plan, SplitConfig(dev=0.1, test=0.2, group="courier"))
    seen = [set(df.courier.iloc[parts[s]]) for s in ("train", "dev", "test")]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sum(len(v) for v in parts.values()) == len(df)


def test_table_and_text_models_served(table_project: Path, text_project: Path):
    from openai import OpenAI

    from zimo.serve.app import create_app
    from zimo.serve.config import ServeConfig

    cfg = ServeConfig(serve_base=False, embeddings=False, watch_s=None, log={"enabled": False})
    rows = _orders(5, seed=3).drop(columns=["minutes"]).to_dict("records")
    with LiveServer(create_app(cfg, projects=[table_project, text_project])) as srv:
        c = httpx.Client(base_url=srv.url, timeout=30)
        ids = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert "eta" in ids and "tiny-sms" in ids
        meta = c.get("/v2/models/eta").json()
        assert meta["platform"] == "lightgbm" and "order_id" not in [
            i["name"] for i in meta["inputs"]
        ]
        # Plain JSON rows; the id column and the target may be present and are ignored.
        r = c.post("/v1/predict", json={"model": "eta", "rows": rows})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["predictions"]) == 5
        assert all(
            lo <= p <= hi
            for p, (lo, hi) in zip(body["predictions"], body["intervals"], strict=True)
        )
        # KServe v2, one tensor per column: the same numbers.
        inputs = [{"name": k, "shape": [5], "datatype": "BYTES", "data": [row[k] for row in rows]}
                  for k in rows[0]]  # fmt: skip
        v2 = c.post("/v2/models/eta/infer", json={"id": "r1", "inputs": inputs}).json()
        assert v2["id"] == "r1"
        got = next(o for o in v2["outputs"] if o["name"] == "predictions")["data"]
        assert np.allclose(got, body["predictions"])
        # A city training never saw is answered, and counted.
        odd = dict(rows[0], City="Atlantis")
        r = c.post("/v1/predict", json={"model": "eta", "rows": [odd]})
        assert r.status_code == 200 and r.json()["unseen_categories"] == {"City": 1}
        # Bad rows: one 4xx naming the field, never a 500.
        misspelt = {("Cty" if k == "City" else k): v for k, v in rows[0].items()}
        r = c.post("/v1/predict", json={"model": "eta", "rows": [misspelt]})
        assert r.status_code == 400 and "'City'" in r.text and "'Cty'" in r.text
        assert r.json()["error"]["param"] == "rows[0].City"
        for bad in ({"Restaurant_latitude": "north"}, {"Restaurant_latitude": [1]}):
            r = c.post("/v1/predict", json={"model": "eta", "rows": [dict(rows[0], **bad)]})
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["error"]["param"] == "rows[0].Restaurant_latitude"
        # JSON's non-standard Infinity: refused when the body is parsed, or as a feature.
        inf = json.dumps({"model": "eta", "rows": [dict(rows[0], Restaurant_latitude=math.inf)]})
        r = c.post("/v1/predict", content=inf, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "error" in r.json()
        from zimo.tabular.features import FeatureBuilder, RowError
        from zimo.tabular.predictor import TabularPredictor

        pred = TabularPredictor(next((table_project / ".zimo" / "artifacts" / "train").iterdir()))
        assert isinstance(pred.features, FeatureBuilder)
        with pytest.raises(RowError, match="finite number"):
            pred.answer_rows([dict(rows[0], Restaurant_latitude=math.nan)])
        assert c.post("/v1/predict", json={"model": "nope", "rows": rows}).status_code == 404
        assert c.post("/v1/predict", json={"model": "eta", "rows": "x"}).status_code == 400
        assert c.post("/v2/models/eta/infer", json={"inputs": "x"}).status_code == 400
        r = c.post(
            "/v1/chat/completions",
            json={"model": "eta", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 400 and "/v2/models/eta/infer" in r.text
        # The classical text sub-model answers chat like a LoRA label sub-model.
        oa = OpenAI(base_url=srv.url + "/v1", api_key="none")
        ans = oa.chat.completions.create(
            model="tiny-sms",
            messages=[
                {"role": "user", "content": "WINNER!! Claim your free prize now, call 09061701461"}
            ],
        )
        assert ans.choices[0].message.content == "spam"
        probs = ans.model_extra["zimo"]["label_probs"]
        assert set(probs) == {"ham", "spam"} and probs["spam"] > 0.5
        assert c.get("/v2/models/tiny-sms").status_code == 400


def test_onnx_exports_verify(table_project: Path, text_project: Path):
    r = run_zimo("export", table_project, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["passed"] and rep["verify"]["model"]["agreement"] >= 0.99
    assert (Path(rep["output"]) / "model.onnx").is_file()
    r = run_zimo("export", text_project, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["verify"]["onnxruntime"]["agreement"] == 1.0
    assert rep["verify"]["onnxruntime"]["max_abs_diff"] < 1e-4
    r = run_zimo("export", table_project, "--format", "gguf")
    assert r.returncode == 2 and "does not apply to a table" in r.stderr


def test_analytic_export_section_has_no_ignored_keys(tmp_path: Path):
    """`export.verify` would be ignored for analytic sub-models (always checked): refused."""
    csv = tmp_path / "t.csv"
    _orders(100).to_csv(csv, index=False)
    proj = tmp_path / "p"
    assert (
        run_zimo(
            "init", proj, "--template", "tabular", "--data", csv, "--target", "minutes"
        ).returncode
        == 0
    )
    yaml_path = proj / "zimo.yaml"
    yaml_path.write_text(yaml_path.read_text() + "export: {formats: [onnx], verify: false}\n")
    r = run_zimo("status", proj)
    assert r.returncode == 2 and "unknown key 'export.verify'" in r.stderr


TWO_SUBMODELS = """\
name: two
task: label
labels: [ham, spam]
positive_label: spam
instruction: Is this SMS message spam or ham (legitimate)? Answer with one word.
data: {path: data/sms.tsv, text_field: SMS, label_field: Label}
split: {dev: 0.1, test: 0.2, seed: 7}
train:
  - method: classical
  - {name: sub, base: gecko, method: lora, task: label, max_steps: 3, batch_size: 4}
eval: {systems: [finetuned, tfidf_logreg], latency_samples: 2}
"""


def test_two_submodels_stage_names_and_bad_names(tmp_path: Path):
    from zimo.config import load_project
    from zimo.stages.dag import stages_for

    proj = make_tiny_project(tmp_path, 60, 30, TWO_SUBMODELS)
    assert [s.name for s in stages_for(load_project(proj))][-3:] == ["train", "train-sub", "eval"]
    (proj / "zimo.yaml").write_text(TWO_SUBMODELS.replace("name: sub", "name: classical"))
    r = run_zimo("status", proj)
    assert r.returncode == 2 and "two sub-models in `train:` are named 'classical'" in r.stderr
    (proj / "zimo.yaml").write_text(TWO_SUBMODELS.replace("method: classical", "method: lightgbm"))
    r = run_zimo("status", proj)
    assert r.returncode == 2 and "does not fit task: label" in r.stderr


@pytest.mark.slow
def test_two_submodels_build_and_serve(tmp_path: Path):
    """A classical and a LoRA sub-model of one project: both train, both are evaluated side
    by side, and the gateway serves each (the project's name answers with the first)."""
    from openai import OpenAI

    from zimo.serve.app import create_app
    from zimo.serve.config import ServeConfig

    proj = make_tiny_project(tmp_path, 60, 30, TWO_SUBMODELS)
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    head = json.loads(run_zimo("status", proj, "--json").stdout)["metrics"]["eval"]
    assert {"finetuned", "classical", "tfidf_logreg"} <= set(head)
    cfg = ServeConfig(serve_base=False, embeddings=False, watch_s=None, log={"enabled": False})
    with LiveServer(create_app(cfg, projects=[proj])) as srv:
        oa = OpenAI(base_url=srv.url + "/v1", api_key="none")
        ids = {m.id for m in oa.models.list().data}
        assert {"two", "two@classical", "two@sub"} <= ids
        msg = [{"role": "user", "content": "WINNER!! Claim your free prize now, call 09061701461"}]
        for name in ("two", "two@classical", "two@sub"):
            ans = oa.chat.completions.create(model=name, messages=msg)
            assert ans.choices[0].message.content in ("ham", "spam")
            assert ans.model_extra["zimo"]["model"] == name


def test_example_delivery_eta_config_loads():
    from zimo.config import load_project
    from zimo.stages.dag import stages_for

    p = load_project(ROOT / "examples" / "delivery-eta")
    assert [s.name for s in stages_for(p)] == ["ingest", "split", "train", "eval"]


def test_dask_engine_build_matches_local(table_project: Path, tmp_path: Path):
    """`engine: dask` trains through LightGBM's Dask interface on a 2-worker local cluster and
    lands within a small tolerance of the single-process model."""
    import shutil

    proj = tmp_path / "eta-dask"
    shutil.copytree(table_project, proj, ignore=shutil.ignore_patterns(".zimo"))
    text = (
        (proj / "zimo.yaml")
        .read_text()
        .replace("method: lightgbm ", "{method: lightgbm, engine: dask} ")
    )
    (proj / "zimo.yaml").write_text(text.replace("train:\n  {method", "train: {method"))
    assert "engine: dask}" in (proj / "zimo.yaml").read_text()
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    local = json.loads(run_zimo("status", table_project, "--json").stdout)["metrics"]["eval"]
    dask = json.loads(run_zimo("status", proj, "--json").stdout)["metrics"]["eval"]
    assert abs(dask["lightgbm"]["r2"] - local["lightgbm"]["r2"]) < 0.03
    summary = json.loads(
        next((proj / ".zimo" / "artifacts" / "train").iterdir())
        .joinpath("manifest.json")
        .read_text()
    )["summary"]
    assert summary["engine"] == "dask"


def test_classification_table_builds_serves_and_exports(tmp_path: Path):
    """A text target becomes a multiclass model: metrics, probabilities over v2, ONNX."""
    from zimo.serve.app import create_app
    from zimo.serve.config import ServeConfig

    df = _orders(900, seed=5)
    df["lateness"] = pd.cut(df.pop("minutes"), [-1e9, 20, 30, 1e9],
                            labels=["early", "on_time", "late"]).astype(str)  # fmt: skip
    csv = tmp_path / "orders.csv"
    df.to_csv(csv, index=False)
    proj = tmp_path / "late"
    assert (
        run_zimo(
            "init", proj, "--template", "tabular", "--data", csv, "--target", "lateness"
        ).returncode
        == 0
    )
    assert "inferred: multiclass" in (proj / "zimo.yaml").read_text()
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    ev = json.loads(run_zimo("status", proj, "--json").stdout)["metrics"]["eval"]
    assert ev["lightgbm"]["accuracy"] > ev["baseline_mean"]["accuracy"] + 0.2
    rows = df.drop(columns=["lateness"]).head(3).to_dict("records")
    cfg = ServeConfig(serve_base=False, embeddings=False, watch_s=None, log={"enabled": False})
    with LiveServer(create_app(cfg, projects=[proj])) as srv:
        body = httpx.post(srv.url + "/v1/predict", json={"model": "late", "rows": rows}).json()
        assert set(body["predictions"]) <= {"early", "on_time", "late"}
        assert all(abs(sum(p.values()) - 1) < 1e-6 for p in body["probabilities"])
        inputs = [
            {"name": k, "shape": [3], "datatype": "BYTES", "data": [x[k] for x in rows]}
            for k in rows[0]
        ]
        out = httpx.post(srv.url + "/v2/models/late/infer", json={"inputs": inputs}).json()[
            "outputs"
        ]
        probs = next(o for o in out if o["name"] == "probabilities")
        assert probs["shape"] == [3, 3]
    r = run_zimo("export", proj, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verify"]["model"]["agreement"] >= 0.99
