"""ONNX export of analytic sub-models, checked against the original model on real rows.

A LightGBM booster is converted with onnxmltools, a scikit-learn TF-IDF text classifier with
skl2onnx; each export is then run once in onnxruntime on caller-given rows and compared with
the Python model, so a build never ships an ONNX file that silently disagrees with the model
it was evaluated as. The file is written atomically (temp file in the same folder, then
``os.replace``): a reader sees the old file or the new one, never half of one.

What converts exactly (checked with onnxmltools 1.16 / skl2onnx 1.20 / onnxruntime 1.32, see
``tests/test_tabular_parts.py``):

- LightGBM regression, binary and multiclass boosters, including native categorical splits
  (onnxmltools rewrites LightGBM's ``a||b||c`` category sets into chains of ``BRANCH_EQ``
  nodes) and missing values (NaN rows follow LightGBM's default direction). Unseen category
  codes and NaN in a categorical column go where LightGBM sends them. Inputs are float32 in
  ONNX, so category codes must stay below 2**24.
- TF-IDF: ``analyzer="char"`` with any ``ngram_range``, and ``analyzer="word"`` with an ASCII
  ``token_pattern`` such as ``[a-zA-Z0-9_]{2,}`` that onnxruntime's RE2 tokenizer reads the
  same way Python's ``re`` does. Not exact or not convertible: ``analyzer="char_wb"``
  (skl2onnx raises NotImplementedError), the default word pattern ``(?u)\\b\\w\\w+\\b``
  (skl2onnx swaps it for ``[a-zA-Z0-9_]+``, which drops non-ASCII words such as Chinese or
  "café"), ``sublinear_tf=True`` (probabilities off by ~1e-2), ``strip_accents``, custom
  tokenizers or preprocessors. sklearn collapses runs of whitespace inside the char analyzer
  and onnxruntime does not, and onnxruntime lowercases character by character (Turkish "İ",
  Greek final sigma differ from Python's ``str.lower``); so the exact recipe is to apply
  :func:`normalize_text` to every text before training and before inference, with
  ``lowercase=False`` in the vectorizers (:func:`onnx_compatible_text_vectorizer`).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from zimo.fileio import write_bytes_atomic

if TYPE_CHECKING:
    import lightgbm
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion, Pipeline

Task = Literal["regression", "binary", "multiclass"]

# Regression rows agree when |onnx − lightgbm| ≤ REL_TOL · max(1, |lightgbm|): ONNX sums the
# trees in float32, so a few 1e-6 of relative error is expected and harmless.
REL_TOL = 1e-3
# Word tokens the ONNX tokenizer (RE2) and Python's re read identically: ASCII letters, digits
# and underscore, two or more (sklearn's default also needs two). Non-ASCII scripts such as
# Chinese are covered by the character n-grams.
ONNX_WORD_PATTERN = r"[a-zA-Z0-9_]{2,}"
_WHITESPACE = re.compile(r"\s+")


def _session(model_bytes: bytes):
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def _probabilities(sess, outputs: list[np.ndarray]) -> np.ndarray:
    names = [o.name for o in sess.get_outputs()]
    i = names.index("probabilities") if "probabilities" in names else len(outputs) - 1
    return np.asarray(outputs[i], dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# LightGBM
# ---------------------------------------------------------------------------------------------


def export_lightgbm_onnx(
    booster: lightgbm.Booster,
    n_features: int,
    out_path: Path,
    X_check: np.ndarray,
    *,
    task: Task,
    target_opset: int | None = None,
) -> dict[str, Any]:
    """Convert ``booster`` to ONNX at ``out_path`` and check it on ``X_check``.

    The ONNX model takes one float32 input ``input`` of shape ``[None, n_features]`` (NaN =
    missing); regressors output ``variable`` (n, 1), classifiers ``label`` and
    ``probabilities`` (n, k) (no ZipMap). ``target_opset=None`` lets onnxmltools choose its
    default opsets, which the installed onnxruntime runs (the check below proves it).

    Returns ``path``, ``bytes``, ``rows`` checked, ``max_abs_diff`` (of predictions or
    probabilities) and ``agreement``: the share of rows whose regression prediction is within
    1e-3 (absolute, or relative for values above 1), or whose argmax class is the same.
    """
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    if task not in ("regression", "binary", "multiclass"):
        raise ValueError(f"unknown task {task!r}")
    if booster.num_feature() != n_features:
        raise ValueError(f"booster has {booster.num_feature()} features, not {n_features}")
    X = np.asarray(X_check, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_features or X.shape[0] == 0:
        raise ValueError(f"X_check must be a non-empty (n, {n_features}) matrix, got {X.shape}")
    model = convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=target_opset,
    )
    data = model.SerializeToString()
    sess = _session(data)
    out = sess.run(None, {"input": X.astype(np.float32)})
    ref = np.asarray(booster.predict(X), dtype=np.float64)
    if task == "regression":
        got = np.asarray(out[0], dtype=np.float64).reshape(-1)
        diff = np.abs(got - ref)
        agree = diff <= REL_TOL * np.maximum(1.0, np.abs(ref))
    else:
        got = _probabilities(sess, out)
        if task == "binary" and ref.ndim == 1:
            ref = np.column_stack([1.0 - ref, ref])
        if got.shape != ref.shape:
            raise ValueError(f"ONNX probabilities have shape {got.shape}, LightGBM {ref.shape}")
        diff = np.abs(got - ref).max(axis=1)
        agree = got.argmax(axis=1) == ref.argmax(axis=1)
    out_path = Path(out_path)
    write_bytes_atomic(out_path, data)
    return {
        "path": str(out_path),
        "bytes": len(data),
        "rows": int(X.shape[0]),
        "max_abs_diff": float(diff.max()),
        "agreement": float(agree.mean()),
    }


# ---------------------------------------------------------------------------------------------
# TF-IDF text classifiers
# ---------------------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Lower-case and collapse every run of whitespace to one space (ends stripped).

    Apply before training and before every ONNX or Python prediction: the exported graph then
    needs neither a lowercasing step (locale-dependent in onnxruntime) nor sklearn's
    whitespace collapsing (which onnxruntime lacks), so both runtimes see the same characters.
    """
    return _WHITESPACE.sub(" ", text.lower()).strip()


def onnx_compatible_text_vectorizer(
    *,
    char_ngrams: tuple[int, int] | None = (1, 3),
    word_ngrams: tuple[int, int] | None = (1, 2),
    min_df: int | float = 1,
    max_df: int | float = 1.0,
) -> TfidfVectorizer | FeatureUnion:
    """TF-IDF features that skl2onnx exports exactly (train on :func:`normalize_text` output).

    Character n-grams (``analyzer="char"``, which covers Chinese and other scripts without
    word boundaries) and/or ASCII word n-grams (:data:`ONNX_WORD_PATTERN`); both with
    ``lowercase=False`` (texts are lower-cased by :func:`normalize_text`), ``sublinear_tf``
    off and no ``max_features``: the converter needs every unigram of a kept n-gram in the
    vocabulary, which ``min_df`` keeps but a frequency cut-off can break. With both kinds the
    result is a ``FeatureUnion`` named ``char`` and ``word``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    common: dict[str, Any] = dict(
        lowercase=False, sublinear_tf=False, min_df=min_df, max_df=max_df, dtype=np.float32
    )
    parts = []
    if char_ngrams:
        parts.append(("char", TfidfVectorizer(analyzer="char", ngram_range=char_ngrams, **common)))
    if word_ngrams:
        parts.append(
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    token_pattern=ONNX_WORD_PATTERN,
                    ngram_range=word_ngrams,
                    **common,
                ),
            )
        )
    if not parts:
        raise ValueError("choose character n-grams, word n-grams or both")
    return parts[0][1] if len(parts) == 1 else FeatureUnion(parts)


def _vectorizers(step: Any) -> list[Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    if isinstance(step, TfidfVectorizer):
        return [step]
    if isinstance(step, FeatureUnion):
        return [v for _, t in step.transformer_list for v in _vectorizers(t)]
    raise ValueError(f"expected a TfidfVectorizer or a FeatureUnion of them, got {type(step)}")


def export_text_classifier_onnx(
    pipeline: Pipeline,
    texts: Sequence[str],
    out_path: Path,
    *,
    locale: str = "C.UTF-8",
    target_opset: int | None = None,
) -> dict[str, Any]:
    """Convert a fitted ``Pipeline([("tfidf", ...), ("clf", ...)])`` to ONNX and check it.

    The ONNX model takes one string input ``text`` of shape ``[None, 1]`` and outputs
    ``label`` and ``probabilities`` (no ZipMap). ``locale`` is the one onnxruntime's
    StringNormalizer uses when a vectorizer lowercases: skl2onnx's default ``en_US.UTF-8`` is
    missing on minimal Linux images and then the model cannot even be loaded. ``texts`` are
    scored by both runtimes exactly as given (normalise them first if the model was trained
    on normalised text).

    Returns ``path``, ``bytes``, ``rows``, ``max_abs_diff`` of the probabilities,
    ``agreement`` (share of rows with the same argmax class) and ``exact`` (agreement 1 and
    max_abs_diff < 1e-4). Raises ValueError for vectorizer settings skl2onnx cannot convert.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    if "tfidf" not in pipeline.named_steps:
        raise ValueError("the pipeline needs a 'tfidf' step")
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("need at least one text to check the export on")
    options: dict[Any, dict[str, Any]] = {id(pipeline): {"zipmap": False}}
    for vec in _vectorizers(pipeline.named_steps["tfidf"]):
        options[id(vec)] = {"locale": locale}
    try:
        with warnings.catch_warnings():
            # skl2onnx warns that analyzer="char" "may not work"; the check below measures
            # whether it does, so the warning only adds noise.
            warnings.filterwarnings("ignore", "The conversion of CountVectorizer may not work")
            model = convert_sklearn(
                pipeline,
                initial_types=[("text", StringTensorType([None, 1]))],
                options=options,
                target_opset=target_opset,
            )
    except (NotImplementedError, RuntimeError) as e:
        raise ValueError(
            f"skl2onnx cannot convert this text pipeline: {e}. "
            "Use onnx_compatible_text_vectorizer() (char or ASCII-word TF-IDF)."
        ) from e
    data = model.SerializeToString()
    sess = _session(data)
    out = sess.run(None, {"text": np.array(texts, dtype=object).reshape(-1, 1)})
    got = _probabilities(sess, out)
    ref = np.asarray(pipeline.predict_proba(texts), dtype=np.float64)
    if got.shape != ref.shape:
        raise ValueError(f"ONNX probabilities have shape {got.shape}, sklearn {ref.shape}")
    diff = float(np.abs(got - ref).max())
    agreement = float((got.argmax(axis=1) == ref.argmax(axis=1)).mean())
    out_path = Path(out_path)
    write_bytes_atomic(out_path, data)
    return {
        "path": str(out_path),
        "bytes": len(data),
        "rows": len(texts),
        "max_abs_diff": diff,
        "agreement": agreement,
        "exact": agreement == 1.0 and diff < 1e-4,
    }
