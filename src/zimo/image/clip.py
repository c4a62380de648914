"""A CLIP checkpoint already on this machine (transformers ``CLIPModel``): a folder, or a hub
id in the local cache. Loaded with ``local_files_only``, so nothing is ever downloaded; a
missing checkpoint is one line saying so. (open_clip checkpoints: convert them to the
transformers layout; the open_clip package is not a dependency.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from zimo.errors import ConfigError

# OpenAI CLIP's pixel statistics, used when the checkpoint has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipBackend:
    def __init__(self, checkpoint: str):
        import torch
        from transformers import AutoTokenizer, CLIPModel

        src = Path(checkpoint).expanduser()
        ref = str(src) if src.exists() else checkpoint
        try:
            self.model = CLIPModel.from_pretrained(ref, local_files_only=True).eval()
            self.tok = AutoTokenizer.from_pretrained(ref, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load the CLIP checkpoint {checkpoint!r} from this machine "
                              f"({str(e).splitlines()[0][:120]})",
                              "give a folder with a transformers CLIPModel, or a hub id that is "
                              "already in the local cache (nothing is downloaded)") from None  # fmt: skip
        mean, std = CLIP_MEAN, CLIP_STD
        pre = src / "preprocessor_config.json" if src.exists() else None
        if pre is not None and pre.is_file():
            p = json.loads(pre.read_text(encoding="utf-8"))
            mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.side = int(self.model.config.vision_config.image_size)
        self.logit_scale = float(self.model.logit_scale.detach().exp().clamp(max=100))
        self.max_len = int(self.model.config.text_config.max_position_embeddings)

    def embed_images(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        import torch
        from torch.nn import functional as F

        out = []
        with torch.inference_mode():
            for i in range(0, len(pixels), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(pixels[i : i + batch_size])).float() / 255
                if x.shape[-1] != self.side:
                    x = F.interpolate(x, size=(self.side, self.side), mode="bicubic",
                                      align_corners=False).clamp(0, 1)  # fmt: skip
                x = (x - self.mean) / self.std
                out.append(
                    F.normalize(_tensor(self.model.get_image_features(pixel_values=x)), dim=-1)
                )
        return torch.cat(out).numpy().astype(np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch
        from torch.nn import functional as F

        with torch.inference_mode():
            enc = self.tok(list(texts), padding=True, truncation=True, max_length=self.max_len,
                           return_tensors="pt")  # fmt: skip
            feats = _tensor(self.model.get_text_features(**enc))
        return F.normalize(feats, dim=-1).numpy().astype(np.float32)


def _tensor(out):
    """transformers 5 may return a model output object where 4.x returned the tensor."""
    if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
        return out.pooler_output
    return out
