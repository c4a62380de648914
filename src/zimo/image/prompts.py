"""Label prompts: the texts whose embeddings stand for each label in the shared space.

A few generic photo templates, averaged, as CLIP's zero-shot recipe does (Radford et al. 2021,
"prompt ensembling"): one template's wording leaks into every label's vector; the mean of
several keeps mostly the label. Users with scans or drawings can give their own templates.
"""

from __future__ import annotations

import numpy as np

DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image showing a {}.",
    "a close-up photo of the {}.",
)


def label_text(label: str) -> str:
    """``golden_retriever`` / ``golden-retriever`` -> ``golden retriever``."""
    return " ".join(label.replace("_", " ").replace("-", " ").split())


def prompts_for(labels: list[str], templates: tuple[str, ...] | list[str]) -> list[list[str]]:
    return [[t.format(label_text(lab)) for t in templates] for lab in labels]


def embed_texts(texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts`` from the embedded (frozen) MiniLM text tower, L2-normalised."""
    from zimo.embeddings import embed

    return np.asarray(embed(list(texts)), dtype=np.float32)


def label_vectors(labels: list[str], templates: tuple[str, ...] | list[str]) -> np.ndarray:
    """(n_labels, dim): the normalised mean of each label's prompt embeddings."""
    flat = [p for group in prompts_for(labels, templates) for p in group]
    vecs = embed_texts(flat).reshape(len(labels), len(templates), -1).mean(axis=1)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
