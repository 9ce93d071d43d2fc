"""Can a checkpoint replace the running weights in place? And is its folder loadable at all?"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from serving.errors import ServingError

# Fields that fix tensor shapes and the forward pass; if any differs, reload-in-place is impossible.
ARCH_FIELDS = (
    "architectures",
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "tie_word_embeddings",
    "max_position_embeddings",
    "rope_theta",
    "rms_norm_eps",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "special_tokens_map.json")


class NotServableError(ServingError, ValueError):
    """A folder that must not be served; the message says why in one line."""


def _config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except FileNotFoundError as e:
        raise NotServableError(f"{folder} has no config.json") from e
    except json.JSONDecodeError as e:
        raise NotServableError(f"{folder}/config.json is not valid JSON") from e


def tokenizer_fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for name in TOKENIZER_FILES:
        p = folder / name
        if p.exists():
            h.update(name.encode())
            h.update(p.read_bytes())
    cfg = folder / "tokenizer_config.json"
    if cfg.exists():  # the chat template may live here or in chat_template.jinja
        data = json.loads(cfg.read_text())
        h.update(
            json.dumps(
                {k: data.get(k) for k in ("chat_template", "bos_token", "eos_token")}, sort_keys=True
            ).encode()
        )
    tpl = folder / "chat_template.jinja"
    if tpl.exists():
        h.update(tpl.read_bytes())
    return h.hexdigest()


def safetensors_index(folder: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name → (dtype, shape) over every *.safetensors file; raises on a truncated or corrupt file."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise NotServableError(f"{folder} has no *.safetensors weights")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in files:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise NotServableError(f"{f} is truncated")
            (hlen,) = struct.unpack("<Q", raw)
            if hlen > size - 8:
                raise NotServableError(f"{f} is truncated or not a safetensors file")
            try:
                header = json.loads(fh.read(hlen))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise NotServableError(f"{f} has a corrupt header") from e
        end = 0
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            end = max(end, meta["data_offsets"][1])
            out[name] = (meta["dtype"], tuple(meta["shape"]))
        if 8 + hlen + end > size:
            raise NotServableError(f"{f} is truncated ({size} bytes, header says {8 + hlen + end})")
    return out


def check_servable(folder: Path) -> None:
    if not folder.is_dir():
        raise NotServableError(f"checkpoint folder not found: {folder}")
    _config(folder)
    safetensors_index(folder)
    if not any((folder / n).exists() for n in TOKENIZER_FILES):
        raise NotServableError(f"{folder} has no tokenizer files")


def same_architecture(current: Path, new: Path) -> tuple[bool, str]:
    """(True, "") when new weights can be loaded into the running engine; else (False, reason)."""
    a, b = _config(current), _config(new)
    for k in ARCH_FIELDS:
        if a.get(k) != b.get(k):
            return False, f"config field {k} differs ({a.get(k)!r} → {b.get(k)!r})"
    if tokenizer_fingerprint(current) != tokenizer_fingerprint(new):
        return False, "tokenizer or chat template differs"
    ia, ib = safetensors_index(current), safetensors_index(new)
    shapes_a = {k: v[1] for k, v in ia.items()}
    shapes_b = {k: v[1] for k, v in ib.items()}
    if shapes_a != shapes_b:
        missing = sorted(set(shapes_a) ^ set(shapes_b))[:3]
        return False, f"weight names or shapes differ (e.g. {missing or 'shapes'})"
    return True, ""
