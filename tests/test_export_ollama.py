"""The Ollama Modelfile against Ollama's documented format, and a label sub-model's prompt.

Format reference: Ollama's ``docs/modelfile.mdx`` (instructions FROM, PARAMETER, TEMPLATE,
SYSTEM, ADAPTER, LICENSE, MESSAGE, REQUIRES; the parameter table with value types; FROM a
GGUF path relative to the Modelfile; triple-quoted multi-line values) and
``docs/template.mdx`` (Go text/template over ``.Messages`` with ``.Role``/``.Content``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from export_fixtures import go_renderer

# Ollama's documented instructions and PARAMETER table (name -> value type).
DOC_INSTRUCTIONS = {"FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE",
                    "REQUIRES"}  # fmt: skip
DOC_PARAMETERS = {"num_ctx": int, "repeat_last_n": int, "repeat_penalty": float,
                  "temperature": float, "seed": int, "stop": str, "num_predict": int,
                  "top_k": int, "top_p": float, "min_p": float}  # fmt: skip
DOC_TEMPLATE_FIELDS = {"System", "Prompt", "Response", "Suffix", "Messages", "Role", "Content",
                       "ToolCalls", "Tools"}  # fmt: skip

LABELS = ["ham", "spam"]
INSTRUCTION = 'Is this SMS "spam" or ham? {Answer} with one word.'  # quotes + braces on purpose
SYSTEM = "You are a precise classifier. Reply with the label only."
SMS = ["WINNER!! Claim your 1000 prize, call 09061701461", "Ok see you at 7\nbring the keys"]


def _tokenizer():
    from zimo.models import load_tokenizer

    return load_tokenizer("gecko")


def _documented_instructions(text: str) -> list[tuple[str, str]]:
    """Split a Modelfile by the documented grammar: ``INSTRUCTION arguments`` per line,
    ``# comment`` lines, and triple-quoted values that may span lines."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"([A-Za-z]+) (.*)$", line)
        assert m, f"not 'INSTRUCTION arguments': {line!r}"
        cmd, arg = m.group(1).upper(), m.group(2)
        if arg.startswith('"""'):
            body = arg[3:]
            while '"""' not in body:
                assert i < len(lines), f"unterminated triple quote in {cmd}"
                body += "\n" + lines[i]
                i += 1
            body, rest = body.split('"""', 1)
            assert rest.strip() == "", f"text after closing quotes: {rest!r}"
            arg = body
        out.append((cmd, arg))
    return out


def _write_label_folder(tmp_path: Path, task: dict) -> tuple[str, dict]:
    from zimo.export.ollama import write_ollama_folder

    (tmp_path / "m-q8_0.gguf").write_bytes(b"GGUF")  # FROM must name a file beside it
    summary = write_ollama_folder(
        tmp_path, "m-q8_0.gguf", _tokenizer(), model_name="SMS Fraud", task="label",
        label_task=task,
    )  # fmt: skip
    return (tmp_path / "Modelfile").read_text(), summary


def test_modelfile_follows_documented_format(tmp_path):
    text, summary = _write_label_folder(
        tmp_path, {"labels": LABELS, "instruction": INSTRUCTION, "system": SYSTEM}
    )
    parsed = _documented_instructions(text)
    assert parsed[0][0] == "FROM"
    assert {c for c, _ in parsed} <= DOC_INSTRUCTIONS
    from_path = parsed[0][1]
    assert not Path(from_path).is_absolute() and (tmp_path / from_path).is_file()
    seen = {}
    for cmd, arg in parsed:
        if cmd != "PARAMETER":
            assert cmd != "FROM" or arg == from_path
            seen[cmd] = seen.get(cmd, 0) + 1
            continue
        name, value = arg.split(" ", 1)
        assert name in DOC_PARAMETERS, name
        kind = DOC_PARAMETERS[name]
        if kind is str:
            assert value.startswith('"') and value.endswith('"'), value
        else:
            kind(value)  # the documented type parses
    assert seen == {"FROM": 1, "TEMPLATE": 1, "SYSTEM": 1}  # each once; stop may repeat
    tpl = dict(parsed)["TEMPLATE"]
    fields = set(re.findall(r"\.([A-Z][A-Za-z]*)", tpl))
    assert fields and fields <= DOC_TEMPLATE_FIELDS, fields
    assert tpl.count("{{") == tpl.count("}}")
    # the project's own parser (run before writing) reads the same instructions
    from zimo.export.ollama import parse_modelfile

    assert [c for c, _ in parse_modelfile(text)] == [c for c, _ in parsed]
    assert summary["create_command"] == f"ollama create sms-fraud -f {tmp_path / 'Modelfile'}"


@pytest.mark.parametrize("system", [SYSTEM, None], ids=["system", "template-default-system"])
def test_label_modelfile_sends_the_training_prompt(tmp_path, system):
    """``ollama run NAME "<sms>"`` must build the prompt the adapter was trained on."""
    from zimo.export.ollama import CHATML
    from zimo.prompts import LabelPrompt

    tok = _tokenizer()
    text, summary = _write_label_folder(
        tmp_path, {"labels": LABELS, "instruction": INSTRUCTION, "system": system}
    )
    parsed = dict(_documented_instructions(text))
    assert parsed["TEMPLATE"] == CHATML.go_template(summary["user_prefix"])
    lp = LabelPrompt(tok, LABELS, INSTRUCTION, system=system)
    for sms in SMS:
        # what Ollama's chat handler passes the template: SYSTEM first, then the user text
        msgs = [{"role": "system", "content": parsed["SYSTEM"]}, {"role": "user", "content": sms}]
        want = tok.apply_chat_template(lp.messages(sms), add_generation_prompt=True, tokenize=False)
        assert CHATML.render(msgs, summary["user_prefix"]) == want
    assert "PARAMETER temperature 0.0" in text


@pytest.mark.skipif(shutil.which("go") is None, reason="Go toolchain not installed")
def test_go_renders_label_template_like_python_twin(tmp_path):
    """Go's text/template (Ollama's engine) renders the label TEMPLATE, prefix included."""
    from zimo.export.ollama import CHATML, GEMMA

    render = go_renderer(tmp_path)
    prefix = f"{INSTRUCTION}\n\nText: "
    for fmt in (CHATML, GEMMA):
        for sms in SMS:
            conv = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": sms}]
            got = render(fmt.go_template(prefix), conv)
            assert got == fmt.render(conv, prefix)
            assert INSTRUCTION in got and got.count(INSTRUCTION) == 1


def _ollama_server_up() -> bool:
    if shutil.which("ollama") is None:
        return False
    try:
        return subprocess.run(["ollama", "list"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(shutil.which("ollama") is None, reason="ollama not installed")
def test_ollama_create_accepts_a_label_export(tmp_path):
    """The real thing: ``ollama create`` on an exported folder, then ``ollama show``."""
    if not _ollama_server_up():
        pytest.skip("ollama is installed but its server is not running (`ollama serve`)")
    from export_fixtures import make_lora_adapter
    from zimo.export.api import export_model

    adapter = make_lora_adapter(tmp_path / "adapter")
    meta = {"name": "zimo-ollama-test", "task": "label", "labels": LABELS,
            "instruction": INSTRUCTION, "system": SYSTEM}  # fmt: skip
    report = export_model(adapter, None, "ollama", "q8_0", tmp_path / "oll", metadata=meta,
                          verify=False)  # fmt: skip
    name = report["ollama"]["model_name"]
    cmd = report["ollama"]["create_command"].split()
    assert cmd[:2] == ["ollama", "create"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    try:
        assert r.returncode == 0, r.stderr
        shown = subprocess.run(["ollama", "show", "--modelfile", name], capture_output=True,
                               text=True, timeout=60)  # fmt: skip
        assert shown.returncode == 0 and "Text: " in shown.stdout
    finally:
        subprocess.run(["ollama", "rm", name], capture_output=True)
