"""A served cascade and the flywheel, with the big tier a real OpenAI-compatible HTTP server
that answers the gold label (a stand-in for a big model)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from fake_openai import FakeOpenAI, Fault
from project_fixtures import SMS, make_tiny_project, run_zimo
from serve_fixtures import LiveServer
from zimo.data.formatters.redact import Redactor

BASE = """\
name: tiny-sms
task: label
labels: [ham, spam]
positive_label: spam
instruction: Is this SMS message spam or ham (legitimate)? Answer with one word.
data: {{path: data/sms.tsv, text_field: SMS, label_field: Label}}
split: {{dev: 0.2, test: 0.2, seed: 7}}
train: {{method: classical}}
eval: {{systems: [tfidf_logreg], latency_samples: 2}}
route:
  mode: cascade
  shadow_rate: {shadow}
  tiers:
    - {{name: classical, model: {local}}}
    - {{name: big, model: big-model{price}}}
  target: {{quality: 0.99}}
serve:
  watch_s: 0.3
  upstream: {{base_url: "{url}", api_key_env: FAKE_UP_KEY}}
"""


def _gold() -> dict[str, str]:
    """Gold label by the text the big tier sees (PII is redacted before a text leaves)."""
    red = Redactor()
    out = {}
    for line in SMS.read_text(encoding="utf-8").splitlines()[1:]:
        label, _, text = line.partition("\t")
        out[red(text).strip()] = label
    return out


@pytest.fixture(scope="module")
def big():
    gold = _gold()

    def answer(body: dict) -> str:
        user = body["messages"][-1]["content"]
        text = user.split("\n\n", 1)[-1].strip()
        return gold.get(text, "ham")

    with FakeOpenAI(answer, models=("big-model",)) as srv:
        yield srv


_DEFAULTS = {"local": "tiny-sms@classical", "price": ", price_per_1k_tokens: 0.005", "shadow": 0.0}


def _project(tmp: Path, url: str, **kw) -> Path:
    yaml_text = BASE.format(url=url, **{**_DEFAULTS, **kw})
    return make_tiny_project(tmp, 160, 70, yaml_text)


def test_cascade_config_errors_are_one_line(tmp_path: Path, big, monkeypatch):
    monkeypatch.setenv("FAKE_UP_KEY", big.api_key)
    # One build; only the route section changes between the cases (route fit reads it).
    proj = _project(tmp_path, big.base_url)
    assert run_zimo("build", proj).returncode == 0
    for kw, msg in [
        ({"local": "tiny-sms@nope"}, "which this project does not train"),
        ({"local": "tiny-sms"}, "names the project itself"),
        ({"price": ""}, "is an upstream model without a price"),
    ]:
        yaml_text = BASE.format(url=big.base_url, **{**_DEFAULTS, **kw})
        (proj / "zimo.yaml").write_text(yaml_text, encoding="utf-8")
        r = run_zimo("route", "fit", proj)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run_zimo("flywheel", proj)
    assert r.returncode != 0 and "error:" in r.stderr


def test_cascade_serves_degrades_and_the_flywheel_closes_the_loop(tmp_path: Path, big, monkeypatch):
    from openai import OpenAI

    from zimo.dataset_io import read_records
    from zimo.logs.requests import query
    from zimo.serve.cli import gateway_app, settings_from_projects
    from zimo.stages.dag import artifact_path

    monkeypatch.setenv("FAKE_UP_KEY", big.api_key)
    proj = _project(tmp_path, big.base_url, shadow=0.0)
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    r = run_zimo("route", "fit", proj)
    assert r.returncode == 0, r.stderr
    cascade_file = proj / ".zimo" / "route" / "cascade.json"
    fitted = json.loads(cascade_file.read_text())
    assert len(fitted["thresholds"]) == 1 and fitted["meta"]["models"]["big"] == "big-model"
    # The calibration asked the big tier over HTTP, with PII redacted before it left.
    assert big.count("/v1/chat/completions") > 0
    import re

    sent = [json.dumps(x["body"], ensure_ascii=False) for x in big.requests]
    assert not any(re.search(r"\b07\d{9}\b", b) for b in sent)  # personal mobile numbers
    assert any("<PHONE>" in b for b in sent)

    settings, roots = settings_from_projects([proj])
    texts = [line.split("\t", 1)[1] for line in SMS.read_text().splitlines()[400:460]]
    with LiveServer(gateway_app(settings, projects=roots)) as srv:
        oa = OpenAI(base_url=srv.url + "/v1", api_key="none")
        c = httpx.Client(base_url=srv.url, timeout=60)
        tiers = []
        for t in texts[:20]:
            resp = c.post("/v1/chat/completions",
                          json={"model": "tiny-sms", "messages": [{"role": "user", "content": t}]})  # fmt: skip
            assert resp.status_code == 200, resp.text
            z = resp.json()["zimo"]
            assert resp.headers["x-zimo-tier"] == z["route"]["tier"]
            trail = z["cascade"]
            assert (
                trail[0]["tier"] == "classical" and trail[0]["threshold"] == fitted["thresholds"][0]
            )
            assert sum(step["answered"] for step in trail) == 1
            tiers.append(z["route"]["tier"])
            assert resp.json()["choices"][0]["message"]["content"] in ("ham", "spam")
        assert "classical" in tiers
        # Force every request to the big tier, then take the big tier down: answers are
        # degraded (the best local tier's), never a 500.
        forced = dict(fitted, thresholds=[2.0])
        cascade_file.write_text(json.dumps(forced))
        big.fail(Fault.status(503), times=3)
        ans = oa.chat.completions.create(
            model="tiny-sms", messages=[{"role": "user", "content": texts[20]}]
        )
        z = ans.model_extra["zimo"]
        assert z["route"]["degraded"] is True and z["route"]["tier"] == "classical"
        assert z["cascade"][-1]["tier"] == "big" and "error" in z["cascade"][-1]
        n_big = tiers.count("big")
        for t in texts[21:45]:
            ans = oa.chat.completions.create(
                model="tiny-sms", messages=[{"role": "user", "content": t}]
            )
            z = ans.model_extra["zimo"]
            assert z["route"]["tier"] == "big" and not z["route"]["degraded"]
            assert z["cost_usd"] > 0 and z["escalated"] is True
            n_big += 1
        logged = query(settings.log_path(), model="tiny-sms")
        assert any(r["route"] and r["route"].get("cascade") for r in logged)
        # The flywheel: the big tier's answers become teacher rows, the classical tier
        # retrains, the thresholds are recalibrated, and the running server picks both up.
        train_before = sorted(p.name for p in (proj / ".zimo" / "artifacts" / "train").iterdir())
        r = run_zimo("flywheel", proj)
        assert r.returncode == 0, r.stderr
        assert f"{n_big} new teacher rows" in r.stdout
        state = json.loads((proj / ".zimo" / "flywheel" / "state.json").read_text())
        assert (
            state["rounds"][-1]["new_rows"] == n_big and "train" in state["rounds"][-1]["retrained"]
        )
        train_after = sorted(p.name for p in (proj / ".zimo" / "artifacts" / "train").iterdir())
        assert set(train_after) > set(train_before)
        # The teacher rows joined the train split and train every fold of the calibration,
        # but are not scored there: the cascade chose them (the escalated, hard requests), so
        # scoring them would make the classical tier look worse on traffic than it is.
        split_train = read_records(artifact_path(proj, "split") / "train.parquet")
        teacher = [r for r in split_train if r["meta"]["origin"] == "teacher"]
        cal = json.loads(cascade_file.read_text())["meta"]["calibration_rows"]
        assert 0 < len(teacher) <= n_big  # one whose text is a dev or test row stays out
        assert cal["trained_not_scored"] == len(teacher)
        assert cal["train_out_of_fold"] == len(split_train) - len(teacher)
        r = run_zimo("flywheel", proj)  # no traffic since: nothing to learn, nothing changes
        assert r.returncode != 0 and "nothing changed" in r.stderr
        new_thr = json.loads(cascade_file.read_text())["thresholds"][0]
        assert new_thr != 2.0
        deadline = time.time() + 20
        while True:  # the watcher reloads the retrained tier within watch_s
            z = oa.chat.completions.create(
                model="tiny-sms", messages=[{"role": "user", "content": texts[50]}]
            ).model_extra["zimo"]
            if z["cascade"][0]["threshold"] == new_thr:
                break
            assert time.time() < deadline, "the new thresholds were not picked up"
            time.sleep(0.3)
        # The dashboard's cascade panel: shares per tier, cost against all-big, the rounds.
        dash = c.get("/ui/api/cascade").json()["projects"][0]
        assert dash["project"] == "tiny-sms" and dash["tiers"] == ["classical", "big"]
        assert dash["share"]["big"] > 0 and abs(sum(dash["share"].values()) - 1) < 1e-9
        assert 0 < dash["cost_vs_all_big"] < 1 and dash["degraded"] == 1
        assert dash["degraded_by_reason"] == {"upstream": 1}
        assert [r["round"] for r in dash["flywheel"]] == [1]
    # Teacher rows go to train only: dev and test stay human-labelled.
    split = next((proj / ".zimo" / "artifacts" / "split").iterdir())
    from zimo.dataset_io import read_records

    assert all(
        r["meta"]["origin"] == "human"
        for s in ("dev", "test")
        for r in read_records(split / f"{s}.parquet")
    )
    assert any(r["meta"]["origin"] == "teacher" for p in (proj / ".zimo" / "artifacts" / "split").iterdir()
               for r in read_records(p / "train.parquet"))  # fmt: skip


@pytest.mark.slow
def test_three_tier_cascade_with_a_lora_tier(tmp_path: Path, big, monkeypatch):
    """classical → LoRA → big: the LoRA tier is calibrated on its dev answers and served
    through the engine (the cheap tiers ask each other in order)."""
    from openai import OpenAI

    from zimo.serve.cli import gateway_app, settings_from_projects

    monkeypatch.setenv("FAKE_UP_KEY", big.api_key)
    yaml_text = BASE.format(url=big.base_url, local="tiny-sms@classical",
                            price=", price_per_1k_tokens: 0.005", shadow=0.0)  # fmt: skip
    yaml_text = yaml_text.replace(
        "train: {method: classical}",
        "train:\n  - {method: classical}\n"
        "  - {name: sub, base: gecko, method: lora, task: label, max_steps: 3, batch_size: 4}",
    ).replace(
        "    - {name: big,",
        "    - {name: sub, model: tiny-sms@sub}\n    - {name: big,",
    )
    proj = make_tiny_project(tmp_path, 160, 70, yaml_text)
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    r = run_zimo("route", "fit", proj)
    assert r.returncode == 0, r.stderr
    fitted = json.loads((proj / ".zimo" / "route" / "cascade.json").read_text())
    assert len(fitted["thresholds"]) == 2
    # Force the classical tier to pass every request on, so the LoRA tier is asked.
    (proj / ".zimo" / "route" / "cascade.json").write_text(
        json.dumps(dict(fitted, thresholds=[2.0, -1.0]))
    )
    settings, roots = settings_from_projects([proj])
    with LiveServer(gateway_app(settings, projects=roots)) as srv:
        oa = OpenAI(base_url=srv.url + "/v1", api_key="none")
        z = oa.chat.completions.create(
            model="tiny-sms", messages=[{"role": "user", "content": "Are we still on for lunch?"}]
        ).model_extra["zimo"]
        assert [s["tier"] for s in z["cascade"]] == ["classical", "sub"]
        assert z["route"]["tier"] == "sub" and z["model"] == "tiny-sms@sub"


def test_shadow_calls_measure_live_agreement(tmp_path: Path, big, monkeypatch):
    """With shadow_rate 1, every cheap answer is also asked of the big tier in the background;
    the log and the dashboard show how often they agree."""
    from zimo.logs.requests import query
    from zimo.serve.cli import gateway_app, settings_from_projects

    monkeypatch.setenv("FAKE_UP_KEY", big.api_key)
    proj = _project(tmp_path, big.base_url, shadow=1.0)
    assert run_zimo("build", proj).returncode == 0
    assert run_zimo("route", "fit", proj).returncode == 0
    cascade_file = proj / ".zimo" / "route" / "cascade.json"
    fitted = json.loads(cascade_file.read_text())
    assert all(isinstance(t, float) and abs(t) < 10 for t in fitted["thresholds"])  # JSON-safe
    # -Infinity (a cascade file may hold it: the cheap tier answers everything) is served as a
    # JSON-safe answer, not a 500.
    cascade_file.write_text(json.dumps(dict(fitted, thresholds=[float("-inf")])))
    settings, roots = settings_from_projects([proj])
    texts = [line.split("\t", 1)[1] for line in SMS.read_text().splitlines()[500:510]]
    with LiveServer(gateway_app(settings, projects=roots)) as srv:
        c = httpx.Client(base_url=srv.url, timeout=60)
        for t in texts:
            z = c.post("/v1/chat/completions", json={"model": "tiny-sms", "messages": [
                {"role": "user", "content": t}]}).json()["zimo"]  # fmt: skip
            assert z["route"]["tier"] == "classical" and z["cascade"][0]["threshold"] is None
        deadline = time.time() + 20
        while len(query(settings.log_path(), endpoint="shadow")) < len(texts):
            assert time.time() < deadline, "shadow calls were not logged"
            time.sleep(0.2)
        dash = c.get("/ui/api/cascade").json()["projects"][0]
        assert sum(s["n"] for s in dash["shadow"]) == len(texts)
        assert 0.5 <= dash["shadow"][0]["agreement"] <= 1.0


@pytest.fixture(scope="module")
def built(tmp_path_factory, big):
    """One built and calibrated project for the budget tests (they change only .zimo/route)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FAKE_UP_KEY", big.api_key)
    proj = _project(tmp_path_factory.mktemp("budget"), big.base_url)
    r = run_zimo("build", proj)
    assert r.returncode == 0, r.stderr
    r = run_zimo("route", "fit", proj)
    assert r.returncode == 0, r.stderr
    yield proj
    mp.undo()


def test_calibration_goes_through_the_teacher_with_retry_after_and_a_budget(built: Path, big):
    from zimo.fileio import read_jsonl

    proj = built
    answers = proj / ".zimo" / "route" / "upstream_answers.jsonl"
    for f in (answers, proj / ".zimo" / "cache" / "teacher.sqlite"):
        f.unlink(missing_ok=True)
    yaml_file = proj / "zimo.yaml"
    original = yaml_file.read_text(encoding="utf-8")
    # A cap of a few calls' price (about 3e-4 USD each at 5 USD per 1M tokens): a clean stop.
    yaml_file.write_text(original.replace("  target:", "  calibration_max_cost: 0.002\n  target:"))
    big.reset_counts()
    r = run_zimo("route", "fit", proj)
    assert r.returncode != 0 and "route.calibration_max_cost (0.002 USD)" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    bought = len(list(read_jsonl(answers)))
    assert 0 < bought == big.count("/v1/chat/completions")  # what was paid for is kept
    # No cap, and the upstream's first answer is a 429 with Retry-After: the teacher waits at
    # least that long, retries, and asks only for the labels not bought yet.
    yaml_file.write_text(original)
    big.reset_counts()
    big.fail(Fault.status(429, retry_after=1.0), times=1)
    r = run_zimo("route", "fit", proj)
    assert r.returncode == 0, r.stderr
    reqs = [x for x in big.requests if x["path"] == "/v1/chat/completions"]
    assert reqs[0]["status"] == 429
    retry = next(x for x in reqs[1:] if x["body"] == reqs[0]["body"])
    assert retry["status"] == 200 and retry["time"] - reqs[0]["time"] >= 1.0
    total = len(list(read_jsonl(answers)))
    assert total > bought and len(reqs) - 1 == total - bought
    big.reset_counts()
    assert run_zimo("route", "fit", proj).returncode == 0
    assert big.count("/v1/chat/completions") == 0  # a re-fit asks nothing again


def test_a_keys_big_tier_budget_degrades_answers_and_rolls_over(built: Path, big, tmp_path: Path,
                                                                monkeypatch):  # fmt: skip
    from zimo.serve.cli import gateway_app, settings_from_projects
    from zimo.serve.keys import KeyStore

    monkeypatch.setenv("FAKE_UP_KEY", big.api_key)
    cascade_file = built / ".zimo" / "route" / "cascade.json"
    fitted = json.loads(cascade_file.read_text())
    cascade_file.write_text(json.dumps(dict(fitted, thresholds=[2.0])))  # every request escalates
    db = tmp_path / "keys.sqlite"
    ks = KeyStore(db)
    capped, capped_rec = ks.create("capped", big_budget_usd=0.002, budget_period="day")
    free, _ = ks.create("free")
    admin, _ = ks.create("ops", admin=True)
    settings, roots = settings_from_projects([built])
    settings = settings.model_copy(update={"keys_db": str(db), "require_keys": True})
    text = SMS.read_text().splitlines()[420].split("\t", 1)[1]
    app = gateway_app(settings, projects=roots)

    def ask(c: httpx.Client, key: str) -> tuple[dict, str]:
        resp = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "tiny-sms", "messages": [{"role": "user", "content": text}]})  # fmt: skip
        assert resp.status_code == 200, resp.text
        return resp.json()["zimo"], resp.headers["x-zimo-tier"]

    with LiveServer(app) as srv:
        c = httpx.Client(base_url=srv.url, timeout=60)
        big.reset_counts()
        seen = []
        for _ in range(8):
            z, tier = ask(c, capped)
            assert tier == z["route"]["tier"]
            seen.append((tier, z["route"]["degraded"], z["route"].get("reason")))
            if tier == "classical":
                assert z["cascade"][-1] == {**z["cascade"][-1], "tier": "big", "answered": False}
        escalated = seen.count(("big", False, None))
        # The same message each time: the first calls fit the budget, then none does.
        assert 1 <= escalated < 8
        assert seen[escalated:] == [("classical", True, "budget")] * (8 - escalated)
        assert big.count("/v1/chat/completions") == escalated  # the upstream was not asked again
        spent, calls = ks.spent(capped_rec.id, "day")
        assert calls == escalated and 0 < spent <= 0.002
        dash = c.get("/ui/api/cascade", headers={"authorization": f"Bearer {admin}"}).json()
        assert dash["projects"][0]["degraded_by_reason"] == {"budget": 8 - escalated}
        z, tier = ask(c, free)  # a key without a budget still reaches the big tier
        assert tier == "big" and big.count("/v1/chat/completions") == escalated + 1
        # The next UTC day, the budget is fresh: no sleeping, the gateway's clock moves.
        app.state.zimo.keys.clock = lambda: time.time() + 86_400
        z, tier = ask(c, capped)
        assert tier == "big" and not z["route"]["degraded"]
    r = run_zimo("keys", "list", "--db", db, "--json")
    row = next(k for k in json.loads(r.stdout) if k["name"] == "capped")
    assert row["big_budget_usd"] == 0.002 and row["big_calls"] == escalated


def test_a_broken_local_tier_falls_through_to_the_big_tier(built: Path, big, tmp_path: Path,
                                                           monkeypatch):  # fmt: skip
    """A cheap tier that cannot answer (here its model file is corrupt, so the gateway cannot
    load it) is passed over with the error in the trail: the big tier answers, never a 500."""
    import shutil

    from zimo.serve.cli import gateway_app, settings_from_projects

    monkeypatch.setenv("FAKE_UP_KEY", big.api_key)
    proj = tmp_path / "broken"
    shutil.copytree(built, proj)
    cascade_file = proj / ".zimo" / "route" / "cascade.json"
    fitted = json.loads(cascade_file.read_text())
    cascade_file.write_text(json.dumps(dict(fitted, thresholds=[0.0])))  # classical answers all
    models = list((proj / ".zimo" / "artifacts").glob("train*/*/classical.joblib"))
    assert models
    for m in models:
        m.write_bytes(b"not a model")
    settings, roots = settings_from_projects([proj])
    text = SMS.read_text().splitlines()[430].split("\t", 1)[1]
    with LiveServer(gateway_app(settings, projects=roots)) as srv:
        resp = httpx.post(srv.url + "/v1/chat/completions", timeout=60, json={
            "model": "tiny-sms", "messages": [{"role": "user", "content": text}]})  # fmt: skip
    assert resp.status_code == 200, resp.text
    z = resp.json()["zimo"]
    assert z["route"]["tier"] == "big" and resp.headers["x-zimo-tier"] == "big"
    first = z["cascade"][0]
    assert first["tier"] == "classical" and not first["answered"] and first["error"]
