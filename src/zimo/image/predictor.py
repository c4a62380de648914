"""An image sub-model loaded for answering: label an image, embed images and texts into one
space. Used by the gateway, the eval stage and the ONNX check.

Both kinds load behind the same three methods: the embedded default (``encoder.pt``, the CNN
in MiniLM's space; texts embed through MiniLM) and a local CLIP (transformers or open_clip,
named in ``image_model.json``: the checkpoint's own image and text towers, with a trained LoRA
adapter merged in).
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np

SPEC = "image_model.json"


class ImagePredictor:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.spec = json.loads((self.folder / SPEC).read_text(encoding="utf-8"))
        self.labels: list[str] = self.spec["labels"]
        self.size: int = int(self.spec["image_size"])
        self.label_vecs = np.load(self.folder / "label_vecs.npy")
        self.backend = self.spec["backend"]
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads
        if self.backend == "embedded":
            import torch

            from zimo.image.encoder import ImageTextEncoder

            self.model = ImageTextEncoder(self.label_vecs.shape[1], tuple(self.spec["widths"]))
            self.model.load_state_dict(torch.load(self.folder / "encoder.pt", weights_only=True))
            self.model.eval().to(memory_format=torch.channels_last)
            self.logit_scale = float(self.model.scale().detach())
        else:
            from zimo.image.clip import load_clip

            # With head: lora the adapter is merged into the towers here.
            self.model = load_clip(self.spec, self.folder)
            self.logit_scale = float(self.spec.get("logit_scale", 100.0))
        self.probe = None
        if (self.folder / "probe.npz").is_file():
            z = np.load(self.folder / "probe.npz")
            self.probe = (z["coef"], z["intercept"])

    # ------------------------------------------------------------------ pixels
    def pixels_from_bytes(self, data: bytes) -> np.ndarray:
        """Decode + square-crop one image (raises ValueError with the reason)."""
        from zimo.image.config import ImageConfig
        from zimo.image.ingest import decode

        cfg = ImageConfig.model_validate(self.spec.get("image_config", {}))
        return decode(data, cfg, self.size).pixels

    def embed_pixels(self, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, 3, S, S) uint8 -> (N, dim) L2-normalised float32."""
        if len(pixels) == 0:
            return np.zeros((0, self.label_vecs.shape[1]), np.float32)
        if self.backend != "embedded":
            with self._lock:
                return self.model.embed_images(pixels, batch_size)
        import torch

        from zimo.hw import cpu_has_fast_bf16
        from zimo.image.fit import batched

        with self._lock:
            out = batched(self.model, torch.from_numpy(np.ascontiguousarray(pixels)),
                          batch_size, bf16=cpu_has_fast_bf16())  # fmt: skip
        out = out.numpy().astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if self.backend != "embedded":
            with self._lock:
                return self.model.embed_texts(texts)
        from zimo.image.prompts import embed_texts

        return embed_texts(texts)

    # ------------------------------------------------------------------ labels
    def probs_from_embeddings(self, emb: np.ndarray) -> np.ndarray:
        if self.probe is not None:
            coef, intercept = self.probe
            logits = emb @ coef.T + intercept
        else:
            logits = self.logit_scale * emb @ self.label_vecs.T
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def label_pixels(self, pixels: np.ndarray) -> tuple[list[str], np.ndarray]:
        probs = self.probs_from_embeddings(self.embed_pixels(pixels))
        return [self.labels[i] for i in probs.argmax(axis=1)], probs

    def label(self, data: bytes) -> tuple[str, dict[str, float]]:
        """One encoded image -> (label, {label: probability})."""
        labels, probs = self.label_pixels(self.pixels_from_bytes(data)[None])
        return labels[0], {
            lab: round(float(p), 6) for lab, p in zip(self.labels, probs[0], strict=True)
        }

    def thumbnail_png(self, pixels: np.ndarray) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(pixels.transpose(1, 2, 0)).save(buf, format="PNG")
        return buf.getvalue()
