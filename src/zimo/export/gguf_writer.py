"""Write a Hugging Face causal LM as a GGUF file that llama.cpp, Ollama and transformers load.

Follows llama.cpp's ``convert_hf_to_gguf.py`` (tensor names through ``gguf.TensorNameMap``, the
Q/K row permutation llama needs, the BPE tokenizer metadata and the ``tokenizer.ggml.pre``
checksum) but works on an in-memory model, so an export does not have to save and re-read
the merged weights. We hand-write this instead of shelling out to the script because the
script is not on PyPI; the ``gguf`` package (same authors) does the file format and the
q8_0 quantisation.

f16 and q8_0 are written directly. k-quants (q4_k_m) need llama.cpp's quantizer, which the
optional ``zimo[llamacpp]`` extra (llama-cpp-python) brings; we write f16 first and quantize.

The file appears only when complete: it is written to a temp file beside the target and
renamed, and any error (a full disk included) removes the temp file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import numpy as np

from zimo.errors import ZimoError

QUANTS = ("f16", "q8_0", "q4_k_m")
LLAMACPP_INSTALL = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" '
    "pip install 'zimo[llamacpp]'"
)

# model_type in config.json -> GGUF architecture name. Qwen2 has the same tensors as llama
# (plus q/k/v biases) but rotates with NEOX order, so its Q/K rows are not permuted; so does
# Gemma 3 (text-only Gemma3ForCausalLM, model_type "gemma3_text").
_ARCHS = {"llama": "llama", "qwen2": "qwen2", "gemma3_text": "gemma3"}
_PERMUTE_QK = {"llama": True, "qwen2": False, "gemma3": False}
# Gemma's RMSNorm multiplies by (1 + w) while llama.cpp multiplies by w, so the converter
# stores w + 1 for every "*norm.weight" (Gemma3Model.norm_shift in convert_hf_to_gguf.py).
_NORM_SHIFT = {"gemma3": 1.0}
# llama.cpp hard-codes these for gemma3 (src/llama-model.cpp): every 6th layer is global, and
# local (sliding-window) layers rotate with base 10000; a config that differs cannot be
# represented in the file, so it is refused rather than exported wrong.
_GEMMA3_SWA_PATTERN = 6
_GEMMA3_LOCAL_ROPE_BASE = 10000.0

# convert_hf_to_gguf.py identifies the BPE pre-tokenizer by hashing the token ids of this text;
# llama.cpp then applies the matching split regex. Only the families Zimo ships or suggests
# are listed; an unknown one is an error rather than silently wrong tokenisation.
_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis "
    "concatenated) ✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
    "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
_PRE_BY_HASH = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",
}


@dataclass
class GGUFResult:
    """What :func:`write_gguf` wrote."""

    path: Path
    arch: str
    quant: str
    size_bytes: int
    n_tensors: int
    tensor_types: dict[str, int]


def supported_architectures() -> list[str]:
    """``model_type`` values the GGUF writer handles."""
    return sorted(_ARCHS)


def check_supported(config: Any) -> str:
    """Return the GGUF architecture for an HF config, or raise a one-line ZimoError."""
    model_type = getattr(config, "model_type", None)
    if model_type not in _ARCHS:
        raise ZimoError(
            f"GGUF export does not support the {model_type!r} architecture yet "
            f"(supported: {', '.join(supported_architectures())})",
            "export with --format hf and convert with llama.cpp's convert_hf_to_gguf.py",
        )
    arch = _ARCHS[model_type]
    if arch == "gemma3":
        _check_gemma3(config)
    return arch


def _check_gemma3(config: Any) -> None:
    """Refuse a Gemma 3 variant whose layout llama.cpp's gemma3 graph would compute wrongly."""
    problems = []
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    n = config.num_hidden_layers
    types = getattr(config, "layer_types", None)
    want = [
        "full_attention" if (i + 1) % _GEMMA3_SWA_PATTERN == 0 else "sliding_attention"
        for i in range(n)
    ]
    if types is not None and list(types) != want:
        problems.append("a global/local layer pattern other than every 6th layer global")
    local = _rope_params(config, "sliding_attention")
    if float(local.get("rope_theta") or _GEMMA3_LOCAL_ROPE_BASE) != _GEMMA3_LOCAL_ROPE_BASE:
        problems.append("a local rope base other than 10000")
    if (local.get("rope_type") or "default") != "default":
        problems.append("rope scaling on local layers")
    scalar = getattr(config, "query_pre_attn_scalar", None)
    if scalar is not None and int(scalar) != head_dim:
        problems.append("query_pre_attn_scalar != head_dim")
    if getattr(config, "attn_logit_softcapping", None):
        problems.append("attention logit soft-capping")
    if problems:
        raise ZimoError(
            f"GGUF export cannot represent this Gemma 3 variant ({'; '.join(problems)})",
            "export with --format hf and convert with llama.cpp's convert_hf_to_gguf.py",
        )


def check_quant(quant: str) -> None:
    """Fail early, with the install line, when a quant type needs the optional extra."""
    if quant not in QUANTS:
        raise ZimoError(f"unknown quant type {quant!r}", f"use one of {', '.join(QUANTS)}")
    if quant == "q4_k_m" and not llamacpp_available():
        raise ZimoError(
            "quant q4_k_m needs llama.cpp's quantizer, which is not installed",
            f"install it with: {LLAMACPP_INSTALL} (or use --quant q8_0 / f16)",
        )


def llamacpp_available() -> bool:
    """True when llama-cpp-python (the ``zimo[llamacpp]`` extra) can be imported."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def estimate_size(model: Any, quant: str) -> int:
    """Bytes the GGUF will take, roughly (for the free-space check before writing)."""
    n = sum(p.numel() for p in model.state_dict().values())
    per = {"f16": 2.0, "q8_0": 34 / 32, "q4_k_m": 2.0}[quant]  # q4_k_m goes through f16 first
    return int(n * per) + 8 * 1024 * 1024  # + tokenizer/metadata


def ensure_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise a one-line error before writing when ``folder``'s disk cannot hold ``needed``."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise disk_full_error(what, needed, free)


def disk_full_error(what: str, needed: int | None, free: int | None) -> ZimoError:
    """The one-line error for a full disk."""
    detail = ""
    if needed is not None and free is not None:
        detail = f" (needs about {needed / 2**20:.0f} MB, {free / 2**20:.0f} MB free)"
    elif free is not None:
        detail = f" ({free / 2**20:.0f} MB free)"
    return ZimoError(
        f"not enough disk space to write {what}{detail}",
        "free some space or choose another --output folder",
    )


# --------------------------------------------------------------------------- tokenizer


def bpe_pre_tokenizer(tokenizer: Any) -> str:
    """The llama.cpp pre-tokenizer name for a BPE tokenizer (checksum as in convert_hf_to_gguf)."""
    ids = tokenizer.encode(_CHKTXT, add_special_tokens=False)
    digest = sha256(str(ids).encode()).hexdigest()
    if digest not in _PRE_BY_HASH:
        raise ZimoError(
            f"the tokenizer's pre-tokenizer is not one Zimo knows (checksum {digest[:12]}...)",
            "export with --format hf and convert with llama.cpp's convert_hf_to_gguf.py",
        )
    return _PRE_BY_HASH[digest]


def _tokenizer_json(tokenizer: Any) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(
        tokenizer, "_tokenizer", None
    )
    if backend is None:
        raise ZimoError(
            "GGUF export needs a fast (tokenizers) tokenizer",
            "save the model with a tokenizer.json",
        )
    return json.loads(backend.to_str())


def _add_bpe_vocab(writer: Any, tokenizer: Any, vocab_size: int, tok_dir: Path) -> dict:
    import gguf

    tj = _tokenizer_json(tokenizer)
    if tj.get("model", {}).get("type") != "BPE":
        raise ZimoError(
            f"GGUF export supports BPE tokenizers only, not {tj.get('model', {}).get('type')!r}",
            "export with --format hf",
        )
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ZimoError("the tokenizer has more tokens than the model's vocab_size", None)
    reverse = {i: t for t, i in vocab.items()}
    added = {t["id"]: t for t in tj.get("added_tokens", [])}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            # Added tokens marked special (or looking like <|...|>) are control tokens, as in
            # convert_hf_to_gguf.py; llama.cpp then never splits or prints them as text.
            special = added[i].get("special") or (
                reverse[i].startswith("<|") and reverse[i].endswith("|>")
            )
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    pre = bpe_pre_tokenizer(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # SpecialVocab reads merges, bos/eos/unk/pad ids, add_bos/add_eos and the chat template
    # from the saved tokenizer files exactly as the official converter does.
    special = gguf.SpecialVocab(tok_dir, load_merges=True, n_vocab=len(tokens))
    if not special.merges:
        raise ZimoError("the BPE tokenizer has no merges", "check tokenizer.json")
    special.add_to_gguf(writer, quiet=True)
    if special.chat_template is None and getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)
    return {
        "model": "gpt2",
        "pre": pre,
        "n_tokens": len(tokens),
        "n_merges": len(special.merges),
        "special_token_ids": dict(special.special_token_ids),
        "chat_template": bool(special.chat_template or getattr(tokenizer, "chat_template", None)),
    }


def source_gguf(base_dir: str | os.PathLike | None) -> Path | None:
    """The GGUF a base model folder was converted from (``zimo.models`` records it), if any."""
    if base_dir is None:
        return None
    from zimo.fileio import read_json_optional

    src = read_json_optional(Path(base_dir) / "zimo_source.json").get("source_gguf")
    return Path(src) if src and Path(src).is_file() else None


def _spm_respelled(token: str) -> str:
    # A Gemma GGUF stores its whitespace-run tokens as real spaces, the HF vocab as U+2581
    # runs (the same respelling transformers' GGUF tokenizer loader applies).
    return "\u2581" * len(token) if " " in token and not token.strip() else token


def _add_spm_vocab(
    writer: Any, tokenizer: Any, vocab_size: int, tok_dir: Path, base_dir: Path | None
) -> dict:
    """A sentencepiece ("llama") vocabulary: tokens, scores and types, as Gemma needs.

    llama.cpp's SPM tokenizer merges by token *score*, which a tokenizer.json does not keep
    (transformers rebuilds Gemma's merges from token order, not scores). We therefore take
    tokens, scores and types from the base's original GGUF, which is where the embedded
    gecko-zh comes from, after checking that they are exactly the tokenizer's vocabulary:
    LoRA training never changes the vocabulary. Special ids, add_bos/add_eos and the chat
    template come from the tokenizer in use, as for BPE.
    """
    import gguf
    from gguf import GGUFReader

    src = source_gguf(base_dir)
    if src is None:
        raise ZimoError(
            "GGUF export of a sentencepiece (Gemma) tokenizer needs the base's original GGUF "
            "vocabulary (token scores), which this base folder does not record",
            "export with --format hf and convert with llama.cpp's convert_hf_to_gguf.py",
        )
    fields = GGUFReader(str(src)).fields
    if fields["tokenizer.ggml.model"].contents() != "llama":
        raise ZimoError(f"{src.name} does not hold a sentencepiece vocabulary", None)
    tokens = list(fields["tokenizer.ggml.tokens"].contents())
    scores = [float(x) for x in fields["tokenizer.ggml.scores"].contents()]
    types = [int(x) for x in fields["tokenizer.ggml.token_type"].contents()]
    vocab = tokenizer.get_vocab()
    reverse = {i: t for t, i in vocab.items()}
    wrong = [i for i, t in enumerate(tokens) if reverse.get(i) != _spm_respelled(t)]
    if len(tokens) != vocab_size or len(vocab) != len(tokens) or wrong:
        raise ZimoError(
            f"the tokenizer does not match the vocabulary of {src.name} "
            f"({len(vocab)} vs {len(tokens)} tokens, {len(wrong)} differ)",
            "export with --format hf and convert with llama.cpp's convert_hf_to_gguf.py",
        )
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_add_space_prefix(False)  # as Gemma3Model.set_vocab: Gemma adds no prefix space
    special = gguf.SpecialVocab(tok_dir, load_merges=False, n_vocab=len(tokens))
    # llama.cpp adds BOS to a sentencepiece vocabulary unless told otherwise; say both flags
    # explicitly (as the converter does) when the tokenizer files leave them implicit.
    for which in ("bos", "eos"):
        if which not in special.add_special_token:
            flag = getattr(tokenizer, f"add_{which}_token", None)
            special.add_special_token[which] = bool(flag if flag is not None else which == "bos")
    special.add_to_gguf(writer, quiet=True)
    if special.chat_template is None and getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)
    return {
        "model": "llama",
        "pre": "default",
        "n_tokens": len(tokens),
        "scores_from": src.name,
        "special_token_ids": dict(special.special_token_ids),
        "chat_template": bool(special.chat_template or getattr(tokenizer, "chat_template", None)),
    }


# --------------------------------------------------------------------------- hyperparameters


def _rope_params(config: Any, layer_type: str = "full_attention") -> dict:
    """Rope parameters of one layer type: transformers 5 nests them per layer type for models
    with local and global layers (Gemma 3); older configs have flat rope_theta/rope_scaling."""
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    params = dict(params) if isinstance(params, dict) else {}
    if isinstance(params.get(layer_type), dict):
        params = dict(params[layer_type])
    elif any(isinstance(v, dict) for v in params.values()):
        params = {}  # nested, but not for this layer type
    if layer_type == "sliding_attention" and "rope_theta" not in params:
        local = getattr(config, "rope_local_base_freq", None)  # transformers 4.x Gemma 3
        if local is not None:
            params["rope_theta"] = local
    return params


def _rope_theta(config: Any) -> float:
    theta = _rope_params(config).get("rope_theta")
    return float(theta or getattr(config, "rope_theta", None) or 10000.0)


def _rope_scaling(config: Any) -> dict | None:
    params = _rope_params(config)
    kind = params.get("rope_type") or params.get("type") or "default"
    return None if kind == "default" else params


def _add_hparams(writer: Any, config: Any, arch: str) -> None:

    if arch == "gemma3":
        _add_gemma3_hparams(writer, config)
        return
    n_head = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or n_head)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    _add_rope_scaling(writer, config)


def _add_rope_scaling(writer: Any, config: Any) -> None:
    import gguf

    scaling = _rope_scaling(config)
    if scaling is None:
        return
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind != "linear":
        raise ZimoError(
            f"GGUF export does not support rope scaling {kind!r} yet",
            "export with --format hf and convert with llama.cpp's convert_hf_to_gguf.py",
        )
    writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    writer.add_rope_scaling_factor(float(scaling["factor"]))


def _add_gemma3_hparams(writer: Any, config: Any) -> None:
    """The keys Gemma3Model.set_gguf_parameters writes (the embedded gecko-zh file has the same).

    rope.freq_base is the global layers' base; llama.cpp fixes the local layers' base (10000)
    and the 1-in-6 global pattern itself (checked in :func:`_check_gemma3`).
    """
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or 1)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    if getattr(config, "final_logit_softcapping", None):
        writer.add_final_logit_softcapping(float(config.final_logit_softcapping))
    if getattr(config, "sliding_window", None):
        writer.add_sliding_window(int(config.sliding_window))
    _add_rope_scaling(writer, config)


# --------------------------------------------------------------------------- tensors


def _permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    # HF stores rotary halves [x0..x(d/2), y0..] per head; llama.cpp rotates interleaved pairs.
    # Same reshape as LlamaModel.permute in convert_hf_to_gguf.py (n_head = kv heads for K).
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _gguf_tensors(model: Any, arch: str) -> Iterator[tuple[str, np.ndarray]]:
    import gguf

    config = model.config
    n_blocks = config.num_hidden_layers
    arch_enum = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
    names = gguf.get_tensor_name_map(arch_enum, n_blocks)
    n_head = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        if hf_name == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ZimoError(f"GGUF export cannot map tensor {hf_name!r} of a {arch} model", None)
        data = tensor.detach().float().cpu().numpy()
        shift = _NORM_SHIFT.get(arch, 0.0)
        if shift and hf_name.endswith("norm.weight"):
            data = data + shift
        if _PERMUTE_QK[arch]:
            if hf_name.endswith("q_proj.weight") or hf_name.endswith("q_proj.bias"):
                data = _permute_qk(data, n_head)
            elif hf_name.endswith("k_proj.weight") or hf_name.endswith("k_proj.bias"):
                data = _permute_qk(data, n_kv)
        yield new, data


def _encode(data: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    """Tensor bytes in the file type's encoding (1-D tensors stay f32, as llama.cpp wants)."""
    import gguf

    if data.ndim <= 1:
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    if quant == "q8_0" and data.shape[-1] % 32 == 0:
        qt = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data, qt), qt
    # f16 (also the q8_0 fallback for rows not divisible by the 32-wide block)
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16


# --------------------------------------------------------------------------- writing


def _atomic_target(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    # mkstemp makes 0600 files; an exported model must be readable by e.g. the ollama user.
    os.chmod(tmp, 0o666 & ~current_umask())
    return Path(tmp)


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_gguf(
    model: Any,
    tokenizer: Any,
    path: str | os.PathLike,
    quant: str = "f16",
    *,
    name: str | None = None,
    extra_metadata: dict[str, str] | None = None,
    base_dir: str | os.PathLike | None = None,
    check_space: bool = True,
    progress: bool = True,
) -> GGUFResult:
    """Write ``model`` (an HF causal LM in memory) and ``tokenizer`` to a GGUF file at ``path``.

    ``quant`` is ``f16``, ``q8_0`` or ``q4_k_m`` (the last needs ``zimo[llamacpp]``). The
    tokenizer (vocab, merges, special tokens) and chat template are embedded. Raises a
    one-line :class:`ZimoError` for an unsupported architecture, a missing extra or a full
    disk; no partial file is left behind. ``base_dir`` is the base model's folder: a Gemma
    (sentencepiece) vocabulary takes its token scores from the GGUF that folder was
    converted from (see :func:`source_gguf`).
    """
    import gguf

    path = Path(path)
    check_quant(quant)
    arch = check_supported(model.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    if check_space:
        ensure_free_space(path.parent, estimate_size(model, quant), path.name)
    write_type = "f16" if quant == "q4_k_m" else quant
    ftype = {
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[write_type]
    tmp = _atomic_target(path)
    tmp_f16: Path | None = None
    try:
        writer = gguf.GGUFWriter(path=None, arch=arch)
        writer.add_type("model")
        writer.add_name(name or getattr(model.config, "name_or_path", "") or "zimo-export")
        _add_hparams(writer, model.config, arch)
        writer.add_file_type(ftype)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for key, value in (extra_metadata or {}).items():
            writer.add_string(key, str(value))
        with tempfile.TemporaryDirectory(prefix="zimo-tok-") as tok_dir:
            tokenizer.save_pretrained(tok_dir)
            if arch == "gemma3":
                _add_spm_vocab(writer, tokenizer, model.config.vocab_size, Path(tok_dir), base_dir)
            else:
                _add_bpe_vocab(writer, tokenizer, model.config.vocab_size, Path(tok_dir))
        counts: dict[str, int] = {}
        items = list(_gguf_tensors(model, arch))
        for tname, data in _progress(items, f"GGUF {write_type}", progress):
            encoded, qt = _encode(data, write_type)
            writer.add_tensor(tname, encoded, raw_dtype=qt)
            counts[qt.name] = counts.get(qt.name, 0) + 1
        target = tmp
        if quant == "q4_k_m":
            tmp_f16 = _atomic_target(path.with_name(path.stem + "-f16.gguf"))
            target = tmp_f16
        writer.write_header_to_file(path=target)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=False)
        writer.close()
        if quant == "q4_k_m":
            counts = _llamacpp_quantize(tmp_f16, tmp, "q4_k_m")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            free = shutil.disk_usage(path.parent).free
            raise disk_full_error(path.name, estimate_size(model, quant), free) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if tmp_f16 is not None:
            tmp_f16.unlink(missing_ok=True)
    return GGUFResult(
        path=path,
        arch=arch,
        quant=quant,
        size_bytes=path.stat().st_size,
        n_tensors=sum(counts.values()),
        tensor_types=counts,
    )


def _progress(items: list, label: str, enabled: bool) -> Iterator:
    if not enabled:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), transient=True
    ) as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            yield item
            bar.advance(task)


def _llamacpp_quantize(src: Path, dst: Path, quant: str) -> dict[str, int]:
    """Quantize ``src`` (an f16 GGUF) to ``dst`` with llama.cpp's own quantizer."""
    import ctypes

    import llama_cpp

    ftypes = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    params.nthread = max(1, len(os.sched_getaffinity(0)))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        free = shutil.disk_usage(dst.parent).free
        if free < src.stat().st_size // 2:
            raise disk_full_error(dst.name, src.stat().st_size // 2, free)
        raise ZimoError(f"llama.cpp failed to quantize to {quant} (code {rc})", None)
    return tensor_type_counts(dst)


def tensor_type_counts(path: str | os.PathLike) -> dict[str, int]:
    """How many tensors of each GGML type a GGUF file holds."""
    from gguf import GGUFReader

    counts: dict[str, int] = {}
    for t in GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return counts
