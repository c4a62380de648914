"""A tiny transformers CLIP with random weights and a character-level tokenizer, saved as a
local checkpoint folder: the local-CLIP path runs on every machine without a download."""

from __future__ import annotations

import json
import string
from pathlib import Path


def make_tiny_clip(folder: Path, image_size: int = 32) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + ".,-_'")
    vocab = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tok.save_pretrained(str(folder))
    cfg = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 64, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": image_size, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(cfg).eval().save_pretrained(str(folder))
    return folder


def make_tiny_open_clip(folder: Path, image_size: int = 32) -> tuple[Path, Path]:
    """A tiny open_clip model from a config of our own (random weights) saved as a local
    checkpoint: (the model config .json, the weights file). open_clip's BPE vocabulary ships
    in its wheel, so nothing is downloaded."""
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": image_size, "layers": 2, "width": 32, "head_width": 16,
                          "patch_size": 8},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                        "layers": 2}}  # fmt: skip
    config = folder / "zimo-tiny-openclip.json"
    config.write_text(json.dumps(cfg))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model(config.stem, pretrained=None)
    weights = folder / "tiny.pt"
    torch.save(model.state_dict(), weights)
    return config, weights
