"""An Ollama folder: the GGUF plus a Modelfile, and the exact ``ollama create`` command.

Modelfile syntax (https://github.com/ollama/ollama/blob/main/docs/modelfile.md): one
instruction per line, ``FROM <path>`` (relative to the Modelfile), ``TEMPLATE``/``SYSTEM``/
``LICENSE`` with triple-quoted values, ``PARAMETER <name> <value>`` (``stop`` may repeat).
``TEMPLATE`` is a Go text/template over ``.Messages`` (each with ``.Role`` and ``.Content``);
Ollama inserts ``SYSTEM`` as the first message when a request has none.

Ollama does not run the Jinja chat template stored in the GGUF, so we translate the chat
formats Zimo's bases use into Go templates. Each format is described once by its turn
markers (:class:`ChatFormat`), from which both the Go template and a Python rendering are
made; the tests check the Python rendering against the tokenizer's own chat template.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zimo.errors import ZimoError

# Ollama's own parameter names and the type it parses each into (Modelfile docs).
OLLAMA_PARAMETERS = {
    "num_ctx": int,
    "repeat_last_n": int,
    "repeat_penalty": float,
    "temperature": float,
    "seed": int,
    "stop": str,
    "num_predict": int,
    "top_k": int,
    "top_p": float,
    "min_p": float,
}
MODELFILE_COMMANDS = ("FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE")


@dataclass(frozen=True)
class ChatFormat:
    """A chat format as turn markers: ``{start}{role}\\n{content}{end}`` per message."""

    name: str
    start: str  # before the role name
    end: str  # after the content
    roles: dict[str, str]  # chat role -> role name written in the prompt
    system_as_user: bool = False  # Gemma has no system role: system text goes into user turns

    def go_template(self, user_prefix: str = "") -> str:
        """The Ollama TEMPLATE (Go text/template) for this format.

        ``user_prefix`` is written before the content of every user message: a label
        sub-model's instruction, so ``ollama run`` on a bare text sends the training prompt.
        """
        asst = self.roles["assistant"]
        # A Go string literal, so braces or quotes in the text cannot break the template
        # (JSON string escapes are valid Go escapes).
        prefix = (
            '{{ if eq .Role "user" }}{{ '
            + json.dumps(user_prefix, ensure_ascii=False)
            + " }}{{ end }}"
            if user_prefix
            else ""
        )
        if self.system_as_user:
            # Gemma: a system message is written as a user turn (as Ollama's gemma3 does).
            turn = (
                '{{ if eq .Role "assistant" }}' + self.start + asst + "\n"
                "{{ .Content }}" + self.end + "\n"
                "{{ else }}" + self.start + self.roles["user"] + "\n"
                + prefix + "{{ .Content }}" + self.end + "\n"
                "{{ end }}"
            )  # fmt: skip
        else:
            turn = self.start + "{{ .Role }}\n" + prefix + "{{ .Content }}" + self.end + "\n"
        # No "{{-" trim markers after text: they would also eat the newlines the format needs.
        return (
            "{{- range $i, $_ := .Messages }}"
            + "{{ $last := eq (len (slice $.Messages $i)) 1 }}"
            + turn
            + '{{ if and $last (ne .Role "assistant") }}'
            + self.start
            + asst
            + "\n{{ end }}"
            + "{{ end }}"
        )

    def render(self, messages: list[dict[str, str]], user_prefix: str = "") -> str:
        """What :meth:`go_template` produces for ``messages`` (Python twin, for the tests)."""
        out = []
        for m in messages:
            role = m["role"]
            content = (user_prefix if role == "user" else "") + m["content"]
            if self.system_as_user and role != "assistant":
                role = "user"
            out.append(f"{self.start}{self.roles.get(role, role)}\n{content}{self.end}\n")
        if messages and messages[-1]["role"] != "assistant":
            out.append(f"{self.start}{self.roles['assistant']}\n")
        return "".join(out)

    @property
    def stops(self) -> list[str]:
        return [self.end.strip(), self.start.strip()]


CHATML = ChatFormat(
    "chatml",
    "<|im_start|>",
    "<|im_end|>",
    {"system": "system", "user": "user", "assistant": "assistant"},
)
GEMMA = ChatFormat(
    "gemma",
    "<start_of_turn>",
    "<end_of_turn>",
    {"system": "user", "user": "user", "assistant": "model"},
    system_as_user=True,
)


def detect_chat_format(chat_template: str | None) -> ChatFormat | None:
    """The known format a Jinja chat template writes, or None."""
    if not chat_template:
        return None
    if "<|im_start|>" in chat_template and "<|im_end|>" in chat_template:
        return CHATML
    if "<start_of_turn>" in chat_template and "<end_of_turn>" in chat_template:
        return GEMMA
    return None


def default_system_prompt(chat_template: str | None) -> str | None:
    """A system prompt the chat template inserts when none is given (SmolLM2 has one)."""
    if not chat_template:
        return None
    # the newline is a real one or a Jinja "\n" escape, depending on how the template was saved
    m = re.search(r"<\|im_start\|>system(?:\n|\\n)(.+?)<\|im_end\|>", chat_template)
    return m.group(1) if m else None


def _quote(text: str) -> str:
    if '"""' in text:
        raise ZimoError('a Modelfile value cannot contain """', "remove it from the text")
    return f'"""{text}"""'


def build_modelfile(
    gguf_name: str,
    chat_template: str | None,
    *,
    parameters: dict[str, Any] | None = None,
    system: str | None = None,
    license_text: str | None = None,
    user_prefix: str = "",
) -> tuple[str, dict[str, Any]]:
    """The Modelfile text for ``gguf_name`` (a file beside it) and a summary for the report.

    ``user_prefix`` goes before every user message (see :meth:`ChatFormat.go_template`).
    """
    fmt = detect_chat_format(chat_template)
    lines = [f"FROM ./{gguf_name}"]
    summary: dict[str, Any] = {"chat_format": fmt.name if fmt else None}
    if fmt is not None:
        lines.append(f"TEMPLATE {_quote(fmt.go_template(user_prefix))}")
        if user_prefix:
            summary["user_prefix"] = user_prefix
        system = system if system is not None else default_system_prompt(chat_template)
        if system:
            lines.append(f"SYSTEM {_quote(system)}")
        stops = fmt.stops
    else:
        # Unknown format: Ollama falls back to the GGUF's own template detection.
        summary["note"] = "chat format not recognised; Ollama uses the GGUF's chat template"
        stops = []
    params = dict(parameters or {})
    for stop in stops:
        lines.append(f'PARAMETER stop "{stop}"')
    for key, value in params.items():
        if key not in OLLAMA_PARAMETERS or key == "stop":
            raise ZimoError(
                f"unknown Ollama parameter {key!r}",
                f"use one of {', '.join(k for k in OLLAMA_PARAMETERS if k != 'stop')}",
            )
        lines.append(f"PARAMETER {key} {OLLAMA_PARAMETERS[key](value)}")
    if license_text:
        lines.append(f"LICENSE {_quote(license_text)}")
    summary.update({"stops": stops, "parameters": params})
    return "\n".join(lines) + "\n", summary


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """Split a Modelfile into ``(COMMAND, argument)`` pairs, as Ollama's parser does.

    Raises ValueError on an unknown command or an unterminated triple quote: used by the
    tests, and by :func:`write_ollama_folder` to refuse writing a file Ollama would reject.
    """
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        line_end = text.find("\n", i)
        line_end = n if line_end < 0 else line_end
        line = text[i:line_end].strip()
        if not line or line.startswith("#"):
            i = line_end + 1
            continue
        cmd, _, rest = line.partition(" ")
        if cmd.upper() not in MODELFILE_COMMANDS:
            raise ValueError(f"unknown Modelfile command {cmd!r}")
        rest_start = text.find(rest, i) if rest else line_end
        if rest.startswith('"""'):
            close = text.find('"""', rest_start + 3)
            if close < 0:
                raise ValueError(f"unterminated triple quote after {cmd}")
            out.append((cmd.upper(), text[rest_start + 3 : close]))
            i = text.find("\n", close)
            i = n if i < 0 else i + 1
            continue
        if cmd.upper() == "PARAMETER":
            name, _, value = rest.partition(" ")
            if name not in OLLAMA_PARAMETERS:
                raise ValueError(f"unknown PARAMETER {name!r}")
            value = value.strip()
            if OLLAMA_PARAMETERS[name] is str:
                value = value.strip('"')
            else:
                OLLAMA_PARAMETERS[name](value)  # raises ValueError like Ollama would
            out.append(("PARAMETER", f"{name} {value}"))
        else:
            out.append((cmd.upper(), rest))
        i = line_end + 1
    if not out or out[0][0] != "FROM":
        raise ValueError("a Modelfile must start with FROM")
    return out


def ollama_model_name(name: str) -> str:
    """A model name Ollama accepts (lowercase letters, digits, ``-_.``)."""
    clean = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    return clean or "zimo-model"


def write_ollama_folder(
    folder: Path,
    gguf_name: str,
    tokenizer: Any,
    *,
    model_name: str,
    task: str | None = None,
    license_text: str | None = None,
    num_ctx: int = 2048,
    command_dir: Path | None = None,
    label_task: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``Modelfile`` next to the GGUF in ``folder``; returns the report's ollama part.

    ``command_dir`` is where the folder will finally live (the printed ``ollama create``
    command names it; an export writes into a staging folder first). ``label_task`` (a label
    sub-model's ``instruction``, ``system`` and ``labels``, as in ``label_task.json``) makes
    the Modelfile send the training prompt: that system prompt, and the instruction before
    each user message, so ``ollama run NAME "<text>"`` classifies a bare text. Ollama
    answers with the most likely label (greedy); it cannot apply a tuned decision
    threshold, which ``zimo serve`` does.
    """
    params: dict[str, Any] = {"num_ctx": num_ctx}
    system, user_prefix = None, ""
    if task == "label":
        params["temperature"] = 0  # a classifier should answer the same way every time
        params["num_predict"] = 16
        if label_task is not None:
            from zimo.prompts import DEFAULT_SYSTEM, default_instruction

            # the same fallbacks as zimo.prompts.LabelPrompt, which training used
            instruction = label_task.get("instruction") or default_instruction(
                list(label_task.get("labels") or [])
            )
            user_prefix = f"{instruction}\n\nText: "
            system = label_task.get("system", DEFAULT_SYSTEM)
    else:
        params.update({"temperature": 0.2, "top_p": 0.9})
    text, summary = build_modelfile(
        gguf_name,
        getattr(tokenizer, "chat_template", None),
        parameters=params,
        system=system,
        license_text=license_text,
        user_prefix=user_prefix,
    )
    parse_modelfile(text)  # never hand Ollama a file its parser would refuse
    (folder / "Modelfile").write_text(text, encoding="utf-8")
    name = ollama_model_name(model_name)
    summary["model_name"] = name
    where = (command_dir or folder).resolve() / "Modelfile"
    summary["create_command"] = f"ollama create {name} -f {where}"
    summary["run_command"] = f"ollama run {name}"
    return summary
