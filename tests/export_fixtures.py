"""Helpers for the export tests: a real LoRA adapter on the embedded gecko base."""

from __future__ import annotations

from pathlib import Path

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_lora_adapter(out_dir: Path, *, base: str = "gecko", seed: int = 0, std: float = 0.02):
    """Save a LoRA adapter for ``base`` whose B matrices are random (non-zero), so the merge
    really changes the weights; returns the adapter folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from zimo.models import resolve_model_dir

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(resolve_model_dir(base)), dtype="auto")
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, std)
    peft_model.peft_config["default"].base_model_name_or_path = base
    out_dir = Path(out_dir)
    peft_model.save_pretrained(str(out_dir))
    return out_dir


GO_RENDER = """package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func main() {
	tpl, err := os.ReadFile(os.Args[1])
	if err != nil { panic(err) }
	var msgs []Message
	if err := json.Unmarshal([]byte(os.Args[2]), &msgs); err != nil { panic(err) }
	t := template.Must(template.New("m").Parse(string(tpl)))
	if err := t.Execute(os.Stdout, map[string]any{"Messages": msgs}); err != nil { panic(err) }
}
"""


def go_renderer(tmp_path):
    """A function rendering (Go template text, messages) with Go's text/template, the engine
    Ollama runs TEMPLATE with (build the renderer once per test; needs the `go` toolchain)."""
    import json
    import os
    import subprocess

    (tmp_path / "main.go").write_text(GO_RENDER)
    env = {**os.environ, "GOCACHE": str(tmp_path / "gocache"), "GO111MODULE": "off"}
    exe = tmp_path / "render"
    subprocess.run(["go", "build", "-o", str(exe), "main.go"], cwd=tmp_path, env=env, check=True)

    def render(template: str, messages: list[dict]) -> str:
        (tmp_path / "tpl").write_text(template)
        args = [str(exe), str(tmp_path / "tpl"), json.dumps(messages)]
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout

    return render
