"""``zimo export --format onnx`` for an image sub-model's image tower.

The graph takes float pixels 0-255, (N, 3, S, S) RGB — the decoded, square-cropped image, as
``image_model.json`` describes — and returns ``embedding`` (L2-normalised, in the shared
image-text space) and ``probs`` (softmax over the labels). Normalisation constants, a CLIP's
resize to its own side, and the head (label vectors, or a linear probe) are inside the graph;
a CLIP's LoRA adapter is merged into its tower first. It is checked with onnxruntime against
the in-process model on test images: the largest embedding difference and the label agreement
are recorded, and an export that disagrees fails. The text side is not in the graph: label
vectors are, and free-text queries need the text encoder (MiniLM's, or the CLIP's).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import ConfigError, ZimoError
from zimo.fileio import write_json_atomic

AGREEMENT_TARGET = 0.995  # bf16 in-process vs fp32 graph may flip a near-tie, rarely more
MAX_EMBED_DIFF = 0.05


class _Graph:
    @staticmethod
    def build(tower, label_vecs: np.ndarray, scale: float, probe=None):
        """``tower``: pixels -> L2-normalised embedding; the head is the label prompts at the
        model's temperature, or a linear probe's (coef, intercept) where it has one."""
        import torch

        class WithLabels(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.enc = tower
                self.register_buffer("labels", torch.from_numpy(label_vecs.astype(np.float32)))
                self.scale = float(scale)
                self.probe = probe is not None
                if probe is not None:
                    self.register_buffer("coef", torch.from_numpy(probe[0].astype(np.float32)))
                    self.register_buffer("bias", torch.from_numpy(probe[1].astype(np.float32)))

            def forward(self, pixels):
                e = self.enc(pixels)
                logits = (
                    e @ self.coef.T + self.bias if self.probe else self.scale * e @ self.labels.T
                )
                return e, torch.softmax(logits, dim=-1)

        return WithLabels().eval()


def export_image(folder: Path, fmt: str, out: Path, pixels: np.ndarray | None,
                 check_rows: int = 2000) -> dict[str, Any]:  # fmt: skip
    import onnxruntime as ort
    import torch

    from zimo.image.predictor import ImagePredictor

    if fmt != "onnx":
        raise ConfigError(f"format {fmt!r} does not apply to an image sub-model", "use onnx")
    pred = ImagePredictor(folder)
    if pixels is None or len(pixels) == 0:
        raise ZimoError("no test images to check the ONNX export against", "run `zimo build` first")
    out.mkdir(parents=True, exist_ok=True)
    for f in ("zimo_model.json", "image_model.json"):
        shutil.copyfile(folder / f, out / f)
    # A CLIP's tower is exported with its LoRA adapter already merged (ImagePredictor merges
    # it on load), so the graph is the plain architecture.
    tower = pred.model.float() if pred.backend == "embedded" else pred.model.tower().eval()
    graph = _Graph.build(tower, pred.label_vecs, pred.logit_scale, pred.probe)
    s = pred.size
    dummy = torch.zeros(2, 3, s, s)
    # nn.MultiheadAttention (open_clip's towers) takes a fused kernel in eval mode that ONNX
    # has no operator for; the unfused path computes the same thing.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        torch.onnx.export(graph, (dummy,), str(out / "model.onnx"), input_names=["pixels"],
                          output_names=["embedding", "probs"], dynamo=False, opset_version=17,
                          dynamic_axes={"pixels": {0: "n"}, "embedding": {0: "n"}, "probs": {0: "n"}})  # fmt: skip
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    px = np.ascontiguousarray(pixels[:check_rows])
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    emb_o, probs_o = [], []
    for i in range(0, len(px), 256):
        e, p = sess.run(None, {"pixels": px[i : i + 256].astype(np.float32)})
        emb_o.append(e)
        probs_o.append(p)
    emb_o, probs_o = np.concatenate(emb_o), np.concatenate(probs_o)
    emb_t = pred.embed_pixels(px)
    probs_t = pred.probs_from_embeddings(emb_t)
    diff = float(np.abs(emb_o - emb_t).max())
    agree = float((probs_o.argmax(1) == probs_t.argmax(1)).mean())
    report = {
        "format": "onnx",
        "output": str(out),
        "kind": "image",
        "verify": {"onnxruntime": {"rows": len(px), "max_abs_diff": diff, "agreement": agree}},
        "passed": agree >= AGREEMENT_TARGET and diff <= MAX_EMBED_DIFF,
        "input": {
            "name": "pixels",
            "shape": ["n", 3, s, s],
            "dtype": "float32",
            "note": "RGB 0-255, short side resized to the square and centre-cropped "
            "(zimo.image.ingest.to_square); EXIF orientation applied first",
        },  # fmt: skip
        "outputs": {
            "embedding": "L2-normalised, "
            + ("MiniLM text space" if pred.backend == "embedded" else "the CLIP's shared space"),
            "probs": f"softmax over labels {pred.labels}",
        },  # fmt: skip
    }
    write_json_atomic(out / "export_report.json", report)
    return report
