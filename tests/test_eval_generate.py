"""Generate-task evaluation: systems side by side, overlap, failures, judge, report, cost."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from zimo.errors import ConfigError, DataError
from zimo.eval.config import EvalConfig
from zimo.eval.cost import CostModel, Measurement, cost_summary, measurements_from_batches
from zimo.eval.generate_items import GenerateItem, Generation, detect_overlap, items_from_records
from zimo.eval.generate_report import write_generate_report
from zimo.eval.generate_score import evaluate_generate, precomputed, run_system
from zimo.synth.config import TeacherConfig
from zimo.synth.teacher import Teacher

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FAST = EvalConfig(metrics=["chrf", "rouge_l"], bootstrap_samples=300)


def alpaca_items(n: int, start: int = 0) -> list[GenerateItem]:
    rows = json.loads((SHARED / "alpaca_zh_1k.json").read_text(encoding="utf-8"))[start : start + n]
    return [
        GenerateItem(
            f"t{start + i}",
            [{"role": "user", "content": (r["instruction"] + "\n" + r["input"]).strip()}],
            r["output"],
        )
        for i, r in enumerate(rows)
    ]


def test_items_from_records():
    recs = [
        {
            "id": "a",
            "messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}],
        },
        {"id": "b", "messages": [{"role": "user", "content": "no answer"}]},
        {"id": "c", "text": "prompt", "label": "answer", "messages": None},
    ]
    items = items_from_records(recs)
    assert [(i.id, i.prompt, i.reference) for i in items] == [
        ("a", "问", "答"),
        ("c", "prompt", "answer"),
    ]


def test_overlap_exact_and_near_duplicates():
    train = [
        "请把这句话翻译成英文：今天天气很好，我们去公园散步吧。",
        "Write a poem about the sea and the wind at night.",
    ]
    test = [
        "请把这句话翻译成英文：今天天气很好，我们去公园散步吧。",  # exact
        "请把这句话翻译成英文: 今天天气很好，我们去公园散步吧！",  # same after normalising
        "Write a poem about the sea and the wind at night!!",  # same after normalising
        "Please write a poem about the sea and the wind at night.",  # near duplicate
        "完全不同的问题：什么是光合作用？",  # new
    ]
    r = detect_overlap(train, test, ["a", "b", "c", "d", "e"])
    assert r["exact"] == 3 and r["near"] == 1 and r["count"] == 4
    assert r["ids"] == ["a", "b", "c", "d"]
    assert detect_overlap([], test)["count"] == 0


def test_evaluate_generate_ranks_systems_and_counts_failures():
    items = alpaca_items(40)
    refs = {it.id: it.reference for it in items}
    # "good" copies most of the reference but fails on 3 items; "echo" repeats the prompt
    good = {k: v[: max(4, len(v) * 2 // 3)] for k, v in refs.items()}
    for k in list(good)[:3]:
        good[k] = None
    systems = [
        precomputed("finetuned", items, good),
        run_system("base_zero_shot", items, lambda m: m[-1]["content"], progress=False),
    ]
    res = evaluate_generate(items, systems, config=FAST)
    ft, base = res["systems"]["finetuned"], res["systems"]["base_zero_shot"]
    assert ft["failures"] == 3 and base["failures"] == 0
    assert any("no answer for 3 of 40" in w for w in res["warnings"])
    assert ft["metrics"]["n"] == 40  # failures are scored (as 0), not dropped
    for m in ("chrf", "rouge_l"):
        assert ft["metrics"][m]["low"] > base["metrics"][m]["high"]  # non-overlapping CIs
        d = res["paired"]["finetuned"]["metrics"][m]
        assert d["diff"]["low"] > 0 and d["cis_overlap"] is False
    assert set(res["headline"]) == {"finetuned", "base_zero_shot"}
    # answer lengths (a failure counts as 0 characters) next to the references' mean length
    want = sum(len(v or "") for v in good.values()) / 40
    assert res["headline"]["finetuned"]["answer_chars"] == pytest.approx(want, abs=0.05)
    assert res["reference_chars"] == pytest.approx(sum(map(len, refs.values())) / 40, abs=0.05)
    assert res["headline"]["finetuned"]["chrf"] == pytest.approx(
        ft["metrics"]["chrf"]["value"], abs=1e-4
    )
    ex = res["disagreements"]
    assert 0 < len(ex) <= FAST.disagreements
    assert ex[0]["spread"] >= ex[-1]["spread"]
    assert set(ex[0]["answers"]) == {"finetuned", "base_zero_shot"}


def test_system_errors_are_failures_not_crashes():
    items = alpaca_items(6)

    def flaky(batch):
        if any("三" in m[-1]["content"] for m in batch):
            raise RuntimeError("model crashed")
        return [Generation("答案", 5, 2) for _ in batch]

    run = run_system("finetuned", items, batch_answer=flaky, batch_size=2, progress=False)
    assert len(run.answers) == 6
    assert run.answers.count(None) >= 2 and all(
        e for a, e in zip(run.answers, run.errors, strict=True) if a is None
    )


def test_empty_test_split_is_a_clear_error():
    with pytest.raises(DataError, match="test split is empty"):
        evaluate_generate([], [], config=FAST)


def test_overlap_is_reported_with_count():
    items = alpaca_items(20)
    train_prompts = [it.prompt for it in alpaca_items(200, start=15)]  # items 15..19 overlap
    sys_ = [precomputed("finetuned", items, {it.id: it.reference for it in items})]
    res = evaluate_generate(items, sys_, config=FAST, train_prompts=train_prompts)
    assert res["overlap"]["count"] == 5
    assert any(w.startswith("5 of 20 test prompts") for w in res["warnings"])


def test_eval_config():
    cfg = EvalConfig()
    assert cfg.systems_for("generate") == ["finetuned", "base_zero_shot"]
    assert cfg.reference_for("chat") == "base_zero_shot"
    assert "tfidf_logreg" in cfg.systems_for("label")
    with pytest.raises(ValueError):
        EvalConfig(unknown_key=1)
    with pytest.raises(ValueError):
        EvalConfig(systems=["finetuned"], reference_system="teacher")
    with pytest.raises(ConfigError):
        EvalConfig(systems=["finetuned", "tfidf_logreg"]).systems_for("generate")
    with pytest.raises(ConfigError):
        EvalConfig(metrics=["accuracy"]).metrics_for("generate")


def test_cost_model_local_and_remote():
    meas = measurements_from_batches([2.0, 1.0], [4, 2], completion_tokens=[10] * 6)
    assert [m.compute_s for m in meas] == [0.5] * 4 + [0.5] * 2
    assert [m.latency_s for m in meas] == [2.0] * 4 + [1.0] * 2
    local = cost_summary(meas, CostModel(machine_price_per_hour=3.6), n_boot=200)
    # 0.5 s × 3.6/h = 0.0005 per request -> 0.5 per 1k
    assert local["cost_per_1k"]["value"] == pytest.approx(0.5)
    assert local["latency_p50_s"]["value"] == pytest.approx(2.0)
    assert local["tokens_per_s"]["value"] == pytest.approx(60 / 3.0)
    remote = CostModel(kind="remote", price_in_per_1m=500, price_out_per_1m=1500)
    r = cost_summary([Measurement(1.0, None, 1000, 2000)] * 3, remote, n_boot=200)
    assert r["cost_per_1k"]["value"] == pytest.approx(1000 * (0.5 + 3.0))
    assert "list price" in r["assumption"]


def test_judge_in_evaluation_and_self_contained_report(tmp_path):
    items = alpaca_items(8)
    good = precomputed("finetuned", items, {it.id: "GOOD " + it.reference for it in items})
    base = precomputed("base_zero_shot", items, {it.id: "嗯。" for it in items[:-1]})

    def judge(body):
        text = body["messages"][1]["content"]
        a = re.search(r"【回答 A】\n(.*?)\n\n【回答 B】", text, re.S).group(1)
        return "结论：A" if "GOOD" in a else "结论：B"

    with FakeOpenAI(responder=judge) as srv:
        cfg = TeacherConfig(base_url=srv.base_url, model=srv.models[0], api_key_env=None)
        teacher = Teacher(
            cfg, cache_path=tmp_path / "c.sqlite", progress=False, api_key=srv.api_key
        )
        res = evaluate_generate(items, [good, base], config=FAST, judge=teacher)
        assert srv.count("/v1/chat/completions") == 2 * 7  # the item without a base answer: no call
    j = res["judge"]["finetuned"]
    assert (j["wins"], j["losses"], j["failures"]) == (8, 0, 0)
    assert res["headline"]["finetuned"]["win_rate_vs_base_zero_shot"] == 1.0

    res["training"] = {"train_loss": [[1, 3.4], [2, 3.1], [3, 2.8]], "steps": 3,
                       "dev_loss": [[0, 3.5], [3, 2.9]], "initial_dev_loss": 3.5,
                       "final_dev_loss": 2.9}  # fmt: skip
    paths = write_generate_report(res, tmp_path / "out", title="测试报告")
    page = paths["html"].read_text(encoding="utf-8")
    assert "<script" not in page and not re.search(r"(src|href)=\"https?://", page)
    assert page.count("data:image/png;base64,") == 3  # one bar plot per metric + the loss curve
    assert "answer length (chars)" in page
    assert "Dev loss 3.500 before training → 2.900 after 3 steps (-17.1%)" in page
    assert "测试报告" in page and "win rate vs base_zero_shot" in page
    # every footnote link resolves to a note that says how the number was computed
    refs = set(re.findall(r'href="#fn-(\d+)"', page))
    assert refs and all(f'id="fn-{n}"' in page for n in refs)
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["n"] == 8


def test_generate_local_with_embedded_model():
    """Batched greedy answers from the real embedded gecko model, in input order."""
    from zimo.eval.generate_local import generate_local
    from zimo.models import load_causal_lm

    model, tok = load_causal_lm("gecko")
    prompts = [
        [{"role": "user", "content": "Name a colour."}],
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        [{"role": "user", "content": "Say hello."}],
    ]
    gens = generate_local(model, tok, prompts, max_new_tokens=6, batch_size=2)
    assert len(gens) == 3
    assert all(g.text and 1 <= g.completion_tokens <= 6 and g.prompt_tokens > 5 for g in gens)
    assert "paris" in gens[1].text.lower()
    # batching and sorting by length must not change what each prompt gets
    alone = generate_local(model, tok, prompts[1:2], max_new_tokens=6, batch_size=1)
    assert alone[0].text == gens[1].text


def test_repetition_penalty_counts_only_the_answer():
    """The penalty curbs repeats within the answer but leaves the prompt's words free."""
    from zimo.eval.generate_local import generate_local
    from zimo.infer.penalties import Penalties
    from zimo.models import load_causal_lm

    model, tok = load_causal_lm("gecko")

    def answer(q: str, pen: float, freq: float = 0.0) -> tuple[str, float]:
        g = generate_local(model, tok, [[{"role": "user", "content": q}]], max_new_tokens=40,
                           batch_size=1, penalties=Penalties(pen, freq))[0]  # fmt: skip
        ids = tok(g.text, add_special_tokens=False)["input_ids"]
        return g.text, 1 - len(set(ids)) / len(ids)  # share of repeated tokens

    plain, rep_plain = answer("Count from one to ten in words.", 1.0)
    curbed, rep_curbed = answer("Count from one to ten in words.", 1.5)
    assert curbed != plain and rep_curbed < rep_plain
    # A penalty that counted the prompt would steer the answer away from "days" and "week".
    days, _ = answer("List the days of the week.", 1.8)
    assert "days" in days and "week" in days
    # OpenAI's frequency penalty grows with each repeat: a loop under way is broken too.
    freq, rep_freq = answer("Count from one to ten in words.", 1.0, 1.0)
    assert freq != plain and rep_freq < rep_plain


def test_evaluate_generate_project_end_to_end(tmp_path):
    """The eval stage's library call: base + adapter answer, report and metrics.json written."""
    from types import SimpleNamespace

    from peft import LoraConfig, get_peft_model

    from zimo.eval.generate_eval import evaluate_generate_project
    from zimo.models import load_causal_lm
    from zimo.train.config import TrainConfig

    # An untrained LoRA adapter (B = 0) stands in for `zimo train`'s output: the plumbing is
    # what is tested here, not the quality.
    model, _ = load_causal_lm("gecko")
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    train_dir = tmp_path / "train"
    peft_model.save_pretrained(str(train_dir / "adapter"))
    (train_dir / "zimo_model.json").write_text(
        json.dumps({"base": "gecko", "adapter": "adapter"}), encoding="utf-8"
    )
    config = SimpleNamespace(
        name="tiny-chat",
        task="chat",
        train=TrainConfig(base="gecko", task="chat"),
        eval=EvalConfig(
            metrics=["chrf", "rouge_l"], max_test_rows=3, max_new_tokens=4, bootstrap_samples=200
        ),
    )

    def rec(i, q, a):
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return {"id": str(i), "text": None, "messages": msgs}

    qa = [
        ("Name a colour.", "Blue."),
        ("What is the capital of France?", "Paris."),
        ("Say hello in Spanish.", "Hola."),
        ("How many legs does a cat have?", "Four."),
    ]
    test = [rec(i, q, a) for i, (q, a) in enumerate(qa)]
    train = [rec(9, "What is the capital of France?", "Paris.")]  # overlaps one test prompt
    out = tmp_path / "eval"
    res = evaluate_generate_project(SimpleNamespace(config=config), train, test, train_dir, out)
    assert res["n"] == 3 and set(res["headline"]) == {"finetuned", "base_zero_shot"}
    assert res["overlap"]["count"] == 1
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["headline"]["finetuned"]["chrf"] == res["headline"]["finetuned"]["chrf"]
    assert {"cost_per_1k", "latency_ms_p50", "tokens_per_s"} <= set(
        metrics["headline"]["finetuned"]
    )
    # B = 0: the adapter does not change the model, so both systems answer alike
    ans = res["disagreements"]
    assert ans == [] or all(
        e["answers"]["finetuned"]["text"] == e["answers"]["base_zero_shot"]["text"] for e in ans
    )
    assert (out / "report.html").is_file() and (out / "eval.json").is_file()


def test_eval_answers_command(tmp_path):
    """`zimo eval-answers` on precomputed answers, through the real typer app."""
    import typer
    from typer.testing import CliRunner

    from zimo.eval.cli import register

    app = typer.Typer()
    register(app)

    @app.command("noop")  # typer runs a lone command without its name; keep the name needed
    def _noop() -> None:
        pass

    items = alpaca_items(12)
    (tmp_path / "test.jsonl").write_text(
        "\n".join(
            json.dumps(
                {"id": it.id, "prompt": it.prompt, "reference": it.reference}, ensure_ascii=False
            )
            for it in items
        ),
        encoding="utf-8",
    )
    for name, fn in {"big": lambda r: r, "small": lambda r: r[:5]}.items():
        rows = [{"id": it.id, "answer": fn(it.reference)} for it in items[:-1]]  # last: missing
        (tmp_path / f"{name}.jsonl").write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8"
        )
    out = tmp_path / "rep"
    res = CliRunner().invoke(
        app,
        [
            "eval-answers", str(tmp_path / "test.jsonl"),
            "-s", f"big={tmp_path / 'big.jsonl'}", "-s", f"small={tmp_path / 'small.jsonl'}",
            "--reference", "big", "--metrics", "chrf,rouge_l", "--out", str(out),
            "--bootstrap-samples", "200",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert data["reference_system"] == "big" and "small" in data["paired"]
    assert data["systems"]["big"]["failures"] == 1 == data["systems"]["small"]["failures"]
    assert data["headline"]["big"]["rouge_l"] > data["headline"]["small"]["rouge_l"]


def test_answers_end_at_spelled_out_turn_markers():
    from zimo.eval.generate_local import _cut_at_stop_text

    assert _cut_at_stop_text("答案。<|im_end|>\n<|im_start|>user\n再问") == "答案。"
    assert _cut_at_stop_text("<|im_start>\n<|im_start>") == ""  # misspelt marker
    assert _cut_at_stop_text("cut at the cap <|im_") == "cut at the cap"
    assert _cut_at_stop_text("Gemma<end_of_turn>") == "Gemma"
    assert _cut_at_stop_text("1 < 2 and a|b") == "1 < 2 and a|b"


def test_write_answers_keeps_every_item_and_failures(tmp_path):
    from zimo.eval.generate_eval import write_answers

    items = alpaca_items(3)
    runs = [
        precomputed("finetuned", items, {items[0].id: "答一", items[2].id: "答三"}),
        precomputed("base_zero_shot", items, {it.id: "嗯" for it in items}),
    ]
    path = write_answers(tmp_path / "answers.jsonl", items, runs)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [it.id for it in items]
    assert rows[0]["answers"] == {"finetuned": "答一", "base_zero_shot": "嗯"}
    assert rows[1]["answers"]["finetuned"] is None
    assert rows[1]["errors"] == {"finetuned": "no answer"} and "errors" not in rows[0]
    assert rows[2]["reference"] == items[2].reference
