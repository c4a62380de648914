"""Synth modes end to end against a real local OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fake_openai import FakeOpenAI, Reply, last_user_text
from zimo.dataset_io import read_records
from zimo.errors import ConfigError, DataError
from zimo.logs.requests import RequestLog
from zimo.rouge import RougePool, rouge_l_f1, tokenize
from zimo.synth.answer import answer
from zimo.synth.config import LabelOptions, SelfInstructOptions, SynthConfig, TeacherConfig
from zimo.synth.distill import distill
from zimo.synth.label import label, parse_label
from zimo.synth.run import run_synth
from zimo.synth.self_instruct import load_seed_tasks, parse_tasks, self_instruct
from zimo.synth.teacher import Teacher

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "self_instruct_seed_tasks.jsonl"
WORDS = (
    "apple river quantum budget poem tax contract ledger invoice tennis violin galaxy recipe "
    "mortgage climate protein sonnet algebra python network museum harbor desert orbit vaccine "
    "lantern glacier bakery compiler senate festival magnet parrot volcano saddle tulip"
).split()
ZH_WORDS = list("春夏秋冬山水风雨花鸟鱼虫日月星辰江河湖海城乡街道书画琴棋诗酒茶")


def task_writer(body: dict) -> str:
    """Deterministic Self-Instruct answers: mostly novel tasks plus planted bad ones."""
    prompt = last_user_text(body)
    a, b = map(int, re.findall(r"(\d+) (?:to|到第) (\d+)", prompt)[-1])  # "tasks 4 to 13"
    rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    zh = "简体中文" in prompt
    blocks = []
    for i in range(a, b + 1):
        if zh:
            inst = "请解释" + "".join(rng.sample(ZH_WORDS, 8)) + "之间的关系。"
            out = "答案" + "".join(rng.sample(ZH_WORDS, 5))
        else:
            inst = f"Explain how {' '.join(rng.sample(WORDS, 6))} relate to each other."
            out = f"They relate through {rng.choice(WORDS)}."
        if i == a:
            inst = "Draw an image of a cat sitting on a mat." if not zh else "请绘制一张猫的图片。"
        if i == a + 1 and not zh:
            inst = "What is the relation between the given pairs?"  # a seed: duplicate
        if i == a + 2 and not zh:
            inst = "What is the relation between these given pairs?"  # near-dup: too_similar
        blocks.append(f"###\n{i}. Instruction: {inst}\n{i}. Input:\n<noinput>\n{i}. Output:\n{out}")
    return "\n".join(blocks)


@pytest.fixture
def teacher_factory(tmp_path):
    def make(srv: FakeOpenAI, **kw) -> Teacher:
        cfg = TeacherConfig(
            base_url=srv.base_url,
            model=srv.model,
            api_key_env=None,
            backoff_base=0.01,
            max_retries=2,
            price_in_per_1k=0.001,
            price_out_per_1k=0.002,
            **kw,
        )
        return Teacher(cfg, tmp_path / "cache.sqlite", progress=False, api_key=srv.api_key)

    return make


# -- self-instruct -----------------------------------------------------------------------------
def test_self_instruct_end_to_end(tmp_path, teacher_factory):
    opts = SelfInstructOptions(num_instructions=40, tasks_per_request=10, requests_per_round=2)
    with FakeOpenAI(task_writer) as srv:
        summary = self_instruct(SEEDS, tmp_path / "out", teacher_factory(srv), opts)
        calls = srv.count()
    assert summary["produced"] == 40 and calls == summary["usage"]["calls"]
    drops = summary["filtered_by_reason"]
    assert drops["banned_keyword"] >= 1 and drops["duplicate"] >= 1 and drops["too_similar"] >= 1
    assert summary["cost"] > 0 and summary["tokens"] > 0
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["produced"] == 40
    rows = read_records(tmp_path / "out" / "data.parquet")
    assert len(rows) == 40
    for r in rows:
        assert r["meta"]["origin"] == "teacher"
        assert r["meta"]["generator"] == srv.model
        assert r["meta"]["prompt_template"] == "self_instruct.en.v1"
        assert r["messages"][0]["role"] == "user" and r["messages"][1]["content"]
    # Novelty as the paper defines it: every kept instruction < 0.7 ROUGE-L vs all others.
    insts = [tokenize(r["meta"]["instruction"]) for r in rows]
    seeds = [tokenize(s["instruction"]) for s in load_seed_tasks(SEEDS)]
    for i, a in enumerate(insts):
        for b in insts[:i] + seeds:
            assert rouge_l_f1(a, b) < 0.7
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    assert {r["reject_reason"] for r in rejects} >= {"banned_keyword", "duplicate", "too_similar"}
    # A rerun is free and gives the same data.
    with FakeOpenAI(task_writer) as srv2:
        again = self_instruct(SEEDS, tmp_path / "out2", teacher_factory(srv2), opts)
        assert srv2.count() == 0
    rows2 = read_records(tmp_path / "out2" / "data.parquet")
    assert [r["messages"] for r in rows2] == [r["messages"] for r in rows]
    assert again["usage"]["cached"] == calls


def test_self_instruct_chinese(tmp_path, teacher_factory):
    opts = SelfInstructOptions(
        num_instructions=15, language="zh", tasks_per_request=8, requests_per_round=2
    )
    with FakeOpenAI(task_writer) as srv:
        summary = self_instruct(SEEDS, tmp_path / "zh", teacher_factory(srv), opts)
        assert "简体中文" in last_user_text(srv.requests[0]["body"])
    assert summary["produced"] == 15
    assert summary["filtered_by_reason"]["banned_keyword"] >= 1  # 图片 / 绘制
    rows = read_records(tmp_path / "zh" / "data.parquet")
    assert all(r["meta"]["prompt_template"] == "self_instruct.zh.v1" for r in rows)
    assert all(re.search("[\u4e00-\u9fff]", r["meta"]["instruction"]) for r in rows)


def test_self_instruct_stalls_on_useless_teacher(tmp_path, teacher_factory):
    opts = SelfInstructOptions(num_instructions=10, stall_rounds=2, requests_per_round=1)
    with FakeOpenAI(lambda body: "I cannot help with that.") as srv:
        summary = self_instruct(SEEDS, tmp_path / "o", teacher_factory(srv), opts)
        assert srv.count() == 2
    assert summary["produced"] == 0 and summary["stopped"] == "stalled"
    assert summary["filtered_by_reason"]["unparseable_answer"] == 2


def test_self_instruct_budget_stop_writes_partial_output(tmp_path, teacher_factory):
    opts = SelfInstructOptions(num_instructions=200, tasks_per_request=10, requests_per_round=1)
    with FakeOpenAI(task_writer) as srv:
        t = teacher_factory(srv, max_cost=0.004, max_concurrency=1)
        summary = self_instruct(SEEDS, tmp_path / "o", t, opts)
        assert srv.count() == summary["usage"]["calls"]
    assert summary["stopped"] == "budget"
    assert summary["cost"] <= 0.004 and 0 < summary["produced"] < 200


def test_empty_and_broken_seed_files(tmp_path, teacher_factory):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('not json\n{"name": "no instruction"}\n')
    with FakeOpenAI(task_writer) as srv:
        for f in (empty, broken):
            with pytest.raises(DataError, match="no usable tasks"):
                self_instruct(f, tmp_path / "o", teacher_factory(srv))
        with pytest.raises(DataError, match="does not exist"):
            self_instruct(tmp_path / "missing.jsonl", tmp_path / "o", teacher_factory(srv))
        assert srv.count() == 0


def test_parse_tasks_variants():
    alpaca = "###\n4. Instruction: Name a fruit.\n4. Input:\n<noinput>\n4. Output:\nApple\n###\n"
    assert parse_tasks(alpaca) == [{"instruction": "Name a fruit.", "input": "", "output": "Apple"}]
    md = "**Instruction:** Sum the numbers.\n**Input:** 1, 2\n**Output:** 3\n\n5. Instruction: Hi"
    tasks = parse_tasks(md)
    assert tasks[0] == {"instruction": "Sum the numbers.", "input": "1, 2", "output": "3"}
    assert tasks[1]["instruction"] == "Hi" and tasks[1]["output"] == ""
    zh = "1. 指令：把下面的句子翻译成英文。\n1. 输入：你好\n1. 输出：Hello"
    assert parse_tasks(zh) == [
        {"instruction": "把下面的句子翻译成英文。", "input": "你好", "output": "Hello"}
    ]
    js = '```json\n[{"instruction": "Say hi", "input": "", "output": "hi"}]\n```'
    assert parse_tasks(js)[0]["output"] == "hi"
    assert parse_tasks("Sorry, I can't.") == []
    assert parse_tasks('[{"instruction": "broken') == []


def test_rouge_matches_reference_lcs_and_handles_cjk():
    def lcs_dp(a, b):
        t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                t[i + 1][j + 1] = t[i][j] + 1 if x == y else max(t[i][j + 1], t[i + 1][j])
        return t[-1][-1]

    rng = random.Random(0)
    vocab = list("abcdef")
    pool, rows = RougePool(), []
    for _ in range(200):
        r = [rng.choice(vocab) for _ in range(rng.randint(1, 90))]
        rows.append(r)
        pool.add(r)
    for n in (1, 10, 63, 64, 65, 100):  # both the uint64 path and the long fallback
        cand = [rng.choice(vocab + ["z"]) for _ in range(n)]
        scores = pool.scores(cand)
        for r, s in zip(rows, scores, strict=True):
            lcs = lcs_dp(cand, r)
            ref = 0.0 if lcs == 0 else 2 * lcs / (len(cand) + len(r))
            assert s == pytest.approx(ref)
    assert tokenize("写一首关于春天的诗 about Spring!") == list("写一首关于春天的诗") + [
        "about",
        "spring",
    ]
    assert rouge_l_f1(tokenize("写一首关于春天的诗"), tokenize("写一首关于秋天的诗")) > 0.8


# -- answer ------------------------------------------------------------------------------------
def test_answer_dedups_and_drops_truncated(tmp_path, teacher_factory):
    def responder(body):
        text = last_user_text(body)
        return Reply("cut off", finish_reason="length") if "long" in text else f"A: {text}"

    records = [
        {"id": "1", "text": "What is 2+2?"},
        {"id": "2", "text": "What is 2+2?"},
        {"id": "3", "text": "  "},
        {"id": "4", "text": "write something long"},
        {"id": "5", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "old"}]},
    ]  # fmt: skip
    with FakeOpenAI(responder) as srv:
        summary = answer(records, tmp_path / "o", teacher_factory(srv))
        assert srv.count() == 3
    assert summary["produced"] == 2
    assert summary["filtered_by_reason"] == {
        "duplicate_prompt": 1,
        "empty_prompt": 1,
        "truncated": 1,
    }
    rows = read_records(tmp_path / "o" / "data.parquet")
    assert rows[1]["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "A: Hi"},
    ]
    assert all(r["meta"]["origin"] == "teacher" and r["meta"]["prompt_template"] for r in rows)


# -- label -------------------------------------------------------------------------------------
def classify(body: dict) -> str:
    """Labels by keyword; 'weird' texts get off-set answers, 'junk' texts malformed JSON."""
    first = next(m["content"] for m in body["messages"] if m["role"] == "user")
    text = first.split("Text:\n", 1)[1]
    if "weird" in text:
        return '{"label": "maybe"}'
    if "junk" in text:
        return '{"label": "sp'  # truncated JSON
    if "fixable" in text and len(body["messages"]) == 1:
        return "I think it is probably fine"  # off-set first, correct when re-asked
    lab = "spam" if "WIN" in text else "ham"
    return json.dumps({"label": lab})


LABEL_RECORDS = [
    {"id": "1", "text": "WIN a prize now", "meta": {"origin": "human"}},
    {"id": "2", "text": "see you at lunch", "meta": {"origin": "human"}},
    {"id": "3", "text": "weird message", "meta": {"origin": "human"}},
    {"id": "4", "text": "junk message", "meta": {"origin": "human"}},
    {"id": "5", "text": "fixable message", "meta": {"origin": "human"}},
]


@pytest.mark.parametrize("json_schema", [True, False])
def test_label_set_enforced(tmp_path, teacher_factory, json_schema):
    opts = LabelOptions(max_label_retries=1)
    with FakeOpenAI(classify, json_schema=json_schema) as srv:
        summary = label(LABEL_RECORDS, tmp_path / "o", teacher_factory(srv), opts, ["ham", "spam"])
        bodies = [r["body"] for r in srv.requests]
    rows = {r["id"]: r for r in read_records(tmp_path / "o" / "data.parquet")}
    assert {k: v["label"] for k, v in rows.items()} == {"1": "spam", "2": "ham", "5": "ham"}
    assert summary["filtered_by_reason"] == {"off_label_set": 1, "malformed_json": 1}
    assert summary["counts"]["label_retries"] == 3
    assert all(r["meta"]["origin"] == "teacher" for r in rows.values())
    assert rows["1"]["meta"]["text_origin"] == "human"
    schema_sent = [b for b in bodies if "response_format" in b]
    if json_schema:
        assert summary["structured_output"] == "json_schema"
        assert schema_sent[0]["response_format"]["json_schema"]["schema"]["properties"]["label"][
            "enum"
        ] == ["ham", "spam"]
    else:  # one rejected schema request, then constrained parsing
        assert summary["structured_output"] == "constrained_parsing"
        assert summary["counts"]["schema_fallbacks"] == 1
        assert all("response_format" not in b for b in bodies[len(schema_sent) :])


def test_parse_label():
    labels = ["ham", "spam"]
    assert parse_label('{"label": "Spam"}', labels) == ("spam", "")
    assert parse_label('```json\n{"label": "ham"}\n```', labels) == ("ham", "")
    assert parse_label("spam.", labels) == ("spam", "")
    assert parse_label("The answer is ham", labels) == ("ham", "")
    assert parse_label("ham or spam", labels) == (None, "ambiguous_label")
    assert parse_label('{"label": "eggs"}', labels) == (None, "off_label_set")
    assert parse_label('{"label": ', labels) == (None, "malformed_json")
    assert parse_label("垃圾", ["正常", "垃圾"]) == ("垃圾", "")


def test_label_without_label_set_is_a_config_error(tmp_path, teacher_factory):
    with FakeOpenAI(classify) as srv, pytest.raises(ConfigError, match="label set"):
        label(LABEL_RECORDS, tmp_path / "o", teacher_factory(srv))


# -- distill -----------------------------------------------------------------------------------
def _fill_log(db: Path) -> None:
    with RequestLog(db) as log:
        msgs = lambda q: [{"role": "user", "content": q}]  # noqa: E731
        log.log(time="2026-01-01T10:00:00Z", model="big", answered_by="big", messages=msgs("q1"),
                response="a1-old", status=200, feedback=None)  # fmt: skip
        log.log(time="2026-01-02T10:00:00Z", model="big", answered_by="big", messages=msgs("q1"),
                response="a1-new", status=200, feedback=1)  # fmt: skip
        log.log(time="2026-01-02T11:00:00Z", model="big", answered_by="big",
                messages=msgs("call me at 13812345678"), response="ok, 13812345678",
                status=200)  # fmt: skip
        log.log(time="2026-01-02T12:00:00Z", model="big", messages=msgs("q-bad"),
                response="x", status=200, feedback=-1)  # fmt: skip
        log.log(time="2026-01-02T13:00:00Z", model="big", messages=msgs("q-fail"),
                response=None, status=502, error="upstream down")  # fmt: skip
        log.log(time="2026-01-02T14:00:00Z", model="other", messages=msgs("q-other"),
                response="y", status=200)  # fmt: skip
        log.log(time="2025-12-01T00:00:00Z", model="big", messages=msgs("q-old"),
                response="z", status=200)  # fmt: skip
        log.log(time="2026-01-03T00:00:00Z", model="big", endpoint="completions",
                prompt="complete me", response="done", status=200)  # fmt: skip


def test_distill_from_log_db(tmp_path):
    db = tmp_path / "requests.sqlite"
    _fill_log(db)
    cfg = SynthConfig(
        mode="distill",
        distill={"models": ["big"], "since": "2026-01-01T00:00:00Z", "log_db": str(db)},
    )
    summary = run_synth(cfg, None, out_dir=tmp_path / "o")
    assert summary["filtered_by_reason"] == {
        "duplicate_prompt": 1,
        "failed_request": 1,
        "feedback": 1,
        "model": 1,
        "time_range": 1,
    }
    rows = read_records(tmp_path / "o" / "data.parquet")
    answers = {r["messages"][0]["content"]: r["messages"][-1]["content"] for r in rows}
    assert answers["q1"] == "a1-new"  # the rated answer wins the dedup
    assert answers["complete me"] == "done"
    assert not any("13812345678" in json.dumps(r["messages"]) for r in rows)
    assert all(r["meta"]["origin"] == "log" and r["meta"]["generator"] for r in rows)
    assert all(r["meta"]["prompt_template"] == "distill.v1" for r in rows)
    assert len(rows) == 3
    with pytest.raises(DataError, match="does not exist"):
        distill(tmp_path / "nope.sqlite", tmp_path / "o2")


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_synth_answer(tmp_path, monkeypatch):
    from zimo.cli import app  # the shipped CLI

    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "hello there"}\n{"text": "second"}\n')
    with FakeOpenAI() as srv:
        monkeypatch.setenv("FAKE_TEACHER_KEY", srv.api_key)
        res = CliRunner().invoke(
            app,
            ["synth", "--mode", "answer", "--input", str(inp), "--output", str(tmp_path / "o"),
             "--base-url", srv.base_url, "--model", srv.model, "--api-key-env",
             "FAKE_TEACHER_KEY", "--no-progress"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "2 records" in res.output and srv.count() == 2
    with FakeOpenAI(task_writer) as srv:
        monkeypatch.setenv("FAKE_TEACHER_KEY", srv.api_key)
        res = CliRunner().invoke(
            app,
            ["synth", "-m", "self_instruct", "-i", str(SEEDS), "-o", str(tmp_path / "si"),
             "--base-url", srv.base_url, "--model", srv.model, "--api-key-env",
             "FAKE_TEACHER_KEY", "--num-instructions", "12", "--language", "en",
             "--max-cost", "1", "--no-progress"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "12 records" in res.output and "cost" in res.output
    summary = json.loads((tmp_path / "si" / "summary.json").read_text())
    assert summary["produced"] == 12 and summary["teacher"]["max_cost"] == 1
    db = tmp_path / "r.sqlite"
    _fill_log(db)
    res = CliRunner().invoke(app, ["logs", "--db", str(db), "--export", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 8


def test_config_sections_name_the_yaml_key():
    from zimo.synth.config import parse_sections

    teacher, synth = parse_sections({"model": "big", "max_cost": 3}, {"mode": "label"})
    assert teacher.model == "big" and teacher.max_cost == 3 and synth.mode == "label"
    with pytest.raises(ConfigError) as e:
        parse_sections({"max_cots": 3}, None)
    assert re.search(r"teacher\.max_cots.*allowed keys: .*max_cost", e.value.one_line())
    with pytest.raises(ConfigError, match=r"synth\.self_instruct\.rouge_threshold"):
        parse_sections(None, {"self_instruct": {"rouge_threshold": 2}})
    with pytest.raises(ConfigError, match=r"synth\.mode"):
        parse_sections(None, {"mode": "magic"})


def test_run_synth_self_instruct_from_config(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "\n".join(json.dumps(s) for s in load_seed_tasks(SEEDS)[:10]), encoding="utf-8"
    )
    synth = SynthConfig(
        mode="self_instruct",
        self_instruct={"seed_tasks": str(seeds), "num_instructions": 5, "tasks_per_request": 8},
    )
    with FakeOpenAI(task_writer, api_key="") as srv:  # a server without keys
        cfg = TeacherConfig(base_url=srv.base_url, model=srv.model, api_key_env=None)
        with pytest.raises(ConfigError, match="needs a teacher"):
            run_synth(synth, None, out_dir=tmp_path / "o")
        summary = run_synth(synth, cfg, out_dir=tmp_path / "art" / "o", progress=False)
    assert summary["produced"] == 5
    assert (tmp_path / "art" / "teacher_cache.sqlite").exists()  # outside the output folder
