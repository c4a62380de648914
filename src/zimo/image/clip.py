"""A CLIP checkpoint already on this machine, behind one interface for both libraries that make
them: transformers ``CLIPModel`` (a folder, or a hub id in the local cache, loaded with
``local_files_only``) and open_clip (an architecture name or config .json plus a local weights
file; the optional ``clip`` extra). Nothing is ever downloaded; a missing checkpoint is one line
saying so.

Both give: ``image_features`` / ``text_features`` (differentiable, for LoRA), ``embed_images`` /
``embed_texts`` (inference, L2-normalised numpy), ``lora_targets`` (which modules take LoRA) and
``PixelTower`` (uint8-range pixels -> normalised embedding; the in-process model and the ONNX
graph are the same module, so the export check compares like with like).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import ConfigError

# OpenAI CLIP's pixel statistics, used when the checkpoint does not say its own.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
ADAPTER = "lora"  # the adapter folder inside a train artifact


class ClipBackend:
    source = "base"
    model: Any
    side: int
    logit_scale: float

    def _stats(self, mean, std) -> None:
        import torch

        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    # -- what each library does differently ------------------------------------------------
    def encode_image(self, model, x):  # x: normalised pixels at self.side
        raise NotImplementedError

    def text_features(self, texts: list[str]):
        raise NotImplementedError

    def lora_targets(self, text_tower: bool) -> str:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def tower(self) -> PixelTower:
        return PixelTower(self)

    def image_features(self, pixels):
        """uint8-range float pixels (N, 3, S, S) -> unnormalised features (keeps the graph)."""
        return self.tower().features(pixels)

    def embed_images(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        import torch

        tower = self.tower().eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(pixels), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(pixels[i : i + batch_size])).float()
                out.append(tower(x))
        return torch.cat(out).numpy().astype(np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch
        from torch.nn import functional as F

        with torch.inference_mode():
            return F.normalize(self.text_features(list(texts)), dim=-1).numpy().astype(np.float32)

    def apply_adapter(self, folder: Path) -> None:
        """Load a trained LoRA adapter and merge it into the towers' weights (plain modules
        afterwards: no adapter overhead when answering, and exportable as they are)."""
        from peft import PeftModel

        self.model = PeftModel.from_pretrained(self.model, str(folder)).merge_and_unload().eval()


def _first_line(e: Exception) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:160]


class TransformersClip(ClipBackend):
    source = "transformers"

    def __init__(self, checkpoint: str):
        from transformers import AutoTokenizer, CLIPModel

        src = Path(checkpoint).expanduser()
        ref = str(src) if src.exists() else checkpoint
        try:
            self.model = CLIPModel.from_pretrained(ref, local_files_only=True).eval()
            self.tok = AutoTokenizer.from_pretrained(ref, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load the CLIP checkpoint {checkpoint!r} from this machine "
                              f"({_first_line(e)[:120]})",
                              "give a folder with a transformers CLIPModel, or a hub id that is "
                              "already in the local cache (nothing is downloaded)") from None  # fmt: skip
        mean, std = CLIP_MEAN, CLIP_STD
        pre = src / "preprocessor_config.json" if src.exists() else None
        if pre is not None and pre.is_file():
            p = json.loads(pre.read_text(encoding="utf-8"))
            mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
        self._stats(mean, std)
        self.side = int(self.model.config.vision_config.image_size)
        self.logit_scale = float(self.model.logit_scale.detach().exp().clamp(max=100))
        self.max_len = int(self.model.config.text_config.max_position_embeddings)

    def encode_image(self, model, x):
        return _tensor(model.get_image_features(pixel_values=x))

    def text_features(self, texts: list[str]):
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_len,
                       return_tensors="pt")  # fmt: skip
        return _tensor(self.model.get_text_features(**enc))

    def lora_targets(self, text_tower: bool) -> str:
        towers = "vision_model|text_model" if text_tower else "vision_model"
        return rf"(?:.*\.)?(?:{towers})\.encoder\.layers\.\d+\.self_attn\.(?:q_proj|k_proj|v_proj|out_proj)"


class OpenClip(ClipBackend):
    source = "open_clip"

    def __init__(self, checkpoint: str, model_name: str):
        try:
            import open_clip
        except ImportError:
            raise ConfigError("source: open_clip needs the open_clip package",
                              "pip install 'zimo[clip]' (open_clip_torch)") from None  # fmt: skip
        name = model_name
        if name.endswith(".json"):
            cfg = Path(name).expanduser()
            if not cfg.is_file():
                raise ConfigError(f"open_clip model config {name!r} not found", "fix model_name")
            open_clip.add_model_config(str(cfg))
            name = cfg.stem
        weights = Path(checkpoint).expanduser()
        if not weights.is_file():
            raise ConfigError(f"cannot load the CLIP checkpoint {checkpoint!r} from this machine "
                              "(no such file)", "give the path of the open_clip weights file "
                              "(nothing is downloaded)")  # fmt: skip
        try:
            self.model = open_clip.create_model(name, pretrained=str(weights)).eval()
        except (RuntimeError, ValueError, KeyError, OSError) as e:
            raise ConfigError(f"cannot load open_clip {name!r} from {checkpoint!r} "
                              f"({_first_line(e)[:120]})", "check model_name matches the weights") from None  # fmt: skip
        self.tok = open_clip.get_tokenizer(name)
        visual = self.model.visual
        pre = getattr(visual, "preprocess_cfg", None) or {}
        self._stats(tuple(pre.get("mean", CLIP_MEAN)), tuple(pre.get("std", CLIP_STD)))
        size = visual.image_size
        self.side = int(size[0] if isinstance(size, tuple | list) else size)
        self.logit_scale = float(self.model.logit_scale.detach().exp().clamp(max=100))

    def encode_image(self, model, x):
        return model.encode_image(x)

    def text_features(self, texts: list[str]):
        return self.model.encode_text(self.tok(texts))

    def lora_targets(self, text_tower: bool) -> str:
        # open_clip's attention is nn.MultiheadAttention, which reads its projection weights
        # directly (a LoRA wrapper on out_proj would never run); LoRA goes on the residual
        # blocks' MLPs, which are plain Linear layers called as modules.
        towers = r"visual\.transformer|transformer" if text_tower else r"visual\.transformer"
        return rf"(?:.*\.)?(?:{towers})\.resblocks\.\d+\.mlp\.(?:c_fc|c_proj)"


def load_clip(spec: dict, folder: Path | None = None) -> ClipBackend:
    """The CLIP a spec names (``image_model.json`` or a train config's fields), with the LoRA
    adapter of ``folder`` merged in when it has one."""
    if spec.get("source", "transformers") == "open_clip":
        clip: ClipBackend = OpenClip(spec["checkpoint"], spec["model_name"])
    else:
        clip = TransformersClip(spec["checkpoint"])
    if folder is not None and (folder / ADAPTER).is_dir():
        clip.apply_adapter(folder / ADAPTER)
    return clip


@functools.lru_cache(maxsize=1)
def _pixel_tower_class():
    import torch
    from torch.nn import functional as F

    class _PixelTower(torch.nn.Module):
        """uint8-range float pixels (N, 3, S, S) at the project's image size -> the CLIP's
        L2-normalised image embedding: resize to the CLIP's side (bicubic), scale to 0-1,
        normalise with the checkpoint's statistics, image tower, projection."""

        def __init__(self, clip: ClipBackend):
            super().__init__()
            self.clip = clip
            self.model = clip.model
            self.side = clip.side
            self.register_buffer("mean", clip.mean.clone())
            self.register_buffer("std", clip.std.clone())

        def features(self, pixels):
            x = pixels / 255.0
            if x.shape[-1] != self.side or x.shape[-2] != self.side:
                x = F.interpolate(x, size=(self.side, self.side), mode="bicubic",
                                  align_corners=False).clamp(0, 1)  # fmt: skip
            return self.clip.encode_image(self.model, (x - self.mean) / self.std)

        def forward(self, pixels):
            return F.normalize(self.features(pixels), dim=-1)

    return _PixelTower


def PixelTower(clip: ClipBackend):  # noqa: N802 - builds the torch module class lazily
    return _pixel_tower_class()(clip)


def _tensor(out):
    """transformers 5 may return a model output object where 4.x returned the tensor."""
    if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
        return out.pooler_output
    return out
