"""Text -> image retrieval scores: for each query (a label prompt), rank every test image by
cosine and ask whether a relevant image (same label) is among the first k."""

from __future__ import annotations

import numpy as np


def recall_at_k(query_vecs: np.ndarray, query_labels: list[str], image_vecs: np.ndarray,
                image_labels: list[str], ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:  # fmt: skip
    """Share of queries with a relevant image in the top k, and mean precision in the top k.

    Every label in ``query_labels`` must occur among the images, else the query cannot be
    answered and counts as a miss."""
    sims = query_vecs @ image_vecs.T
    top = np.argsort(-sims, axis=1)[:, : max(ks)]
    labels = np.asarray(image_labels)
    hit = labels[top] == np.asarray(query_labels)[:, None]
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall_at_{k}"] = float(hit[:, :k].any(axis=1).mean())
        out[f"precision_at_{k}"] = float(hit[:, :k].mean())
    return out
