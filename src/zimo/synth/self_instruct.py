"""Self-Instruct / Alpaca: new instruction data from a few seed tasks and a teacher.

Follows Wang et al. 2023 (Self-Instruct) and Taori et al. 2023 (Alpaca): each request shows a
few sampled seed tasks (optionally also already generated ones) and asks for a numbered list of
new tasks; answers are parsed, checked for validity (length, banned words, bad starts,
duplicates) and kept only if their ROUGE-L against every instruction in the pool is < 0.7.

Resumable by construction: work goes in rounds, each round's prompts depend only on the
state after the previous round, and results are processed in request order. With the teacher
cache, a rerun after a crash replays the finished rounds from the cache and asks the teacher
only for what it never answered.
"""

from __future__ import annotations

import json
import math
import random
import re
import unicodedata
from pathlib import Path
from typing import Any

from zimo.errors import DataError
from zimo.records import make_record
from zimo.rouge import RougePool, tokenize
from zimo.synth import templates
from zimo.synth.config import SelfInstructOptions
from zimo.synth.output import SynthResult, write_output
from zimo.synth.teacher import ChatRequest, Teacher

# Tasks a text-only model cannot do (the Alpaca list) and their Chinese counterparts.
BANNED_EN = [
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
    "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
]  # fmt: skip
BANNED_ZH = [
    "图片",
    "图像",
    "照片",
    "视频",
    "音频",
    "音乐",
    "绘制",
    "画一",
    "流程图",
    "图表",
    "地图",
    "文件",
]
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_FIELD = re.compile(
    r"^[ \t>#*_-]*(?:\d+\s*[.)、:：]\s*)?[*_]*\s*(instruction|input|output|指令|输入|输出)\s*[*_]*\s*[:：][*_]*[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_FIELD_NAMES = {"指令": "instruction", "输入": "input", "输出": "output"}
_NO_INPUT = {
    "<noinput>",
    "noinput",
    "<no input>",
    "none",
    "n/a",
    "无",
    "无输入",
    "<无输入>",
    "空",
    "",
}


def load_seed_tasks(path: str | Path) -> list[dict[str, str]]:
    """Seed tasks from a Self-Instruct jsonl (``instruction`` + ``instances``), flat
    ``instruction``/``input``/``output`` lines, or a JSON array of those (Alpaca files).
    Bad lines are skipped; none left is an error."""
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"seed task file {p} does not exist", "pass --input / synth.self_instruct.seed_tasks"
        )
    tasks, bad = [], 0
    text = p.read_text(encoding="utf-8", errors="replace")
    try:  # a JSON array (the Alpaca data files) or JSON lines
        items = json.loads(text) if text.lstrip().startswith("[") else None
    except json.JSONDecodeError:
        items = None
    lines = items if isinstance(items, list) else text.splitlines()
    for line in lines:
        if isinstance(line, str):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
        else:
            obj = line
        if not isinstance(obj, dict) or not str(obj.get("instruction") or "").strip():
            bad += 1
            continue
        instances = obj.get("instances")
        inst = instances[0] if isinstance(instances, list) and instances else obj
        inst = inst if isinstance(inst, dict) else {}
        tasks.append(
            {
                "instruction": str(obj["instruction"]).strip(),
                "input": str(inst.get("input") or "").strip(),
                "output": str(inst.get("output") or "").strip(),
            }
        )
    if not tasks:
        raise DataError(
            f"seed task file {p} has no usable tasks ({bad} unreadable lines)",
            'write one JSON object per line with at least an "instruction" field',
        )
    return tasks


def parse_tasks(text: str) -> list[dict[str, str]]:
    """Parse a teacher answer into tasks: a JSON list, or numbered Instruction/Input/Output
    blocks (English or Chinese labels, markdown bold, full-width colons, missing ``###``)."""
    stripped = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, list):
            return [_task_from_json(item) for item in data if isinstance(item, dict)]
    tasks: list[dict[str, str]] = []
    marks = list(_FIELD.finditer(text))
    for i, m in enumerate(marks):
        name = m.group(1).lower()
        name = _FIELD_NAMES.get(name, name)
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        value = text[m.end() : end]
        value = re.split(r"^\s*#{3,}\s*$", value, flags=re.MULTILINE)[0].strip()
        value = value.strip("*_ \n")
        if name == "instruction":
            tasks.append({"instruction": value, "input": "", "output": ""})
        elif tasks:
            tasks[-1][name] = _clean_input(value) if name == "input" else value
    return tasks


def _task_from_json(item: dict[str, Any]) -> dict[str, str]:
    def get(*keys: str) -> str:
        return next((str(item[k]) for k in keys if item.get(k) is not None), "")

    return {
        "instruction": get("instruction", "指令").strip(),
        "input": _clean_input(get("input", "输入")),
        "output": get("output", "输出").strip(),
    }


def _clean_input(value: str) -> str:
    v = value.strip()
    return "" if v.lower() in _NO_INPUT else v


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


class _Filter:
    """Validity and novelty checks; ``check`` returns a drop reason or None."""

    def __init__(self, opts: SelfInstructOptions, seeds: list[dict[str, str]]):
        self.opts = opts
        banned = list(BANNED_EN) + list(BANNED_ZH) + list(opts.banned_words or [])
        ascii_words = [w for w in banned if w.isascii()]
        self.banned_re = re.compile(r"\b(" + "|".join(map(re.escape, ascii_words)) + r")\b", re.I)
        self.banned_cjk = [w for w in banned if not w.isascii()]
        self.pool = RougePool()
        self.seen: set[str] = set()
        for s in seeds:
            self.add(s["instruction"])

    def add(self, instruction: str) -> None:
        self.pool.add(tokenize(instruction))
        self.seen.add(_norm(instruction))

    def check(self, task: dict[str, str]) -> tuple[str | None, float]:
        inst, out = task["instruction"], task["output"]
        if not inst:
            return "empty_instruction", 0.0
        if not out:
            return "empty_output", 0.0
        toks = tokenize(inst)
        if len(toks) < self.opts.min_instruction_tokens:
            return "too_short", 0.0
        if len(toks) > self.opts.max_instruction_tokens:
            return "too_long", 0.0
        if self.banned_re.search(inst) or any(w in inst for w in self.banned_cjk):
            return "banned_keyword", 0.0
        if self.opts.language == "en":
            if inst.lower().startswith("write a program"):
                return "write_a_program", 0.0
            if not inst[0].isascii():
                return "non_ascii_start", 0.0
        elif not _CJK.search(inst):
            return "wrong_language", 0.0
        if unicodedata.category(inst[0]).startswith("P"):
            return "punctuation_start", 0.0
        if _norm(inst) in self.seen:
            return "duplicate", 1.0
        score = self.pool.max_score(toks)
        if score >= self.opts.rouge_threshold:
            return "too_similar", score
        return None, score


def self_instruct(
    seed_tasks: str | Path | list[dict[str, str]],
    out_dir: str | Path,
    teacher: Teacher,
    opts: SelfInstructOptions | None = None,
) -> dict[str, Any]:
    """Generate ``opts.num_instructions`` new tasks; write Parquet + summary to ``out_dir``.

    Returns the summary dict (counts, drops by reason, tokens, cost, why it stopped).
    """
    opts = opts or SelfInstructOptions()
    seeds = seed_tasks if isinstance(seed_tasks, list) else load_seed_tasks(seed_tasks)
    if not seeds:
        raise DataError("no seed tasks given", "pass at least one seed task")
    template = templates.SELF_INSTRUCT_ZH if opts.language == "zh" else templates.SELF_INSTRUCT_EN
    result = SynthResult("self_instruct")
    filt = _Filter(opts, seeds)
    generated: list[dict[str, Any]] = []
    model = teacher.config.model
    n_requests = n_parsed = 0
    rounds = 0
    stall = 0
    with teacher.progress(opts.num_instructions, "self-instruct", count_calls=False) as bar:
        while len(generated) < opts.num_instructions:
            if rounds >= opts.max_rounds:
                result.stopped = "max_rounds"
                break
            remaining = opts.num_instructions - len(generated)
            n_req = max(
                1, min(opts.requests_per_round, math.ceil(remaining / opts.tasks_per_request))
            )
            requests = []
            for j in range(n_req):
                # Seeded per (run seed, round, slot): the same state gives the same prompts,
                # which is what makes a rerun hit the cache.
                rng = random.Random(f"{opts.seed}:{rounds}:{j}")
                examples = rng.sample(seeds, min(opts.num_prompt_seeds, len(seeds)))
                if opts.num_prompt_generated and generated:
                    k = min(opts.num_prompt_generated, len(generated))
                    examples += [g["task"] for g in rng.sample(generated, k)]
                prompt = templates.self_instruct_prompt(template, examples, opts.tasks_per_request)
                requests.append(
                    ChatRequest([{"role": "user", "content": prompt}], template=template)
                )
            results = teacher.run(requests)
            n_requests += len(requests)
            added = 0
            for res in results:
                if not res.ok:
                    if res.error != "budget":
                        result.dropped[f"teacher_error:{res.error.split(':')[0]}"] += 1
                    continue
                tasks = parse_tasks(res.content or "")
                n_parsed += len(tasks)
                if not tasks:
                    result.reject({"answer": (res.content or "")[:2000]}, "unparseable_answer")
                    continue
                if res.finish_reason == "length":
                    # The last task was cut off by max_tokens (the Alpaca rule).
                    result.reject(tasks.pop(), "truncated")
                for task in tasks:
                    reason, score = filt.check(task)
                    if reason:
                        result.reject({**task, "rouge_l": round(score, 4)}, reason)
                        continue
                    filt.add(task["instruction"])
                    generated.append(
                        {"task": task, "score": score, "key": res.key, "template": template}
                    )
                    added += 1
            rounds += 1
            bar.refresh(completed=min(len(generated), opts.num_instructions))
            if teacher.stopped:
                result.stopped = teacher.stopped
                break
            stall = 0 if added else stall + 1
            if stall >= opts.stall_rounds:
                result.stopped = "stalled"
                break
    for i, g in enumerate(generated[: opts.num_instructions]):
        t = g["task"]
        user = t["instruction"] + (f"\n\n{t['input']}" if t["input"] else "")
        result.records.append(
            make_record(
                None,
                source=f"teacher:{model}",
                offset=i,
                messages=[
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": t["output"]},
                ],
                origin="teacher",
                generator=model,
                extra_meta={
                    "prompt_template": g["template"],
                    "request_key": g["key"][:16],
                    "instruction": t["instruction"],
                    "input": t["input"],
                    "output": t["output"],
                    "max_rouge_l": round(g["score"], 4),
                    "language": opts.language,
                },
            )
        )
    result.counts = {
        "seed_tasks": len(seeds),
        "requests": n_requests,
        "rounds": rounds,
        "parsed_tasks": n_parsed,
        "accepted": len(generated),  # may pass the target in the last round
        "kept": len(result.records),
    }
    result.extra["prompt_templates"] = [template]
    return write_output(out_dir, result, teacher)
