"""A checkpoint derived from another with perturbed weights or a changed chat template, for swap drills.

The benchmarks (bench/swap.py, bench/soak.py, bench/fingerprint.py) and the swap tests need candidates
that differ from the base in a known way without training one: scaled MLP output weights change what
the model says (greedy output and log-probabilities), a changed chat template forces a blue/green swap.
Written like any checkpoint (files first, manifest last, one rename), so a crash leaves nothing half-made.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from training.checkpoint import MANIFEST, load_manifest, write_checkpoint


def derive_checkpoint(
    base: Path,
    dest: Path,
    version: str,
    *,
    scale: float | None = None,
    template_note: str | None = None,
    manifest_extra: dict[str, Any] | None = None,
) -> Path:
    """A copy of `base` with every `mlp.down_proj` weight times `scale` and/or a note prepended to the chat
    template; its manifest names `base` as parent."""
    base = Path(base)
    manifest = load_manifest(base).model_copy(
        update={"version": version, "parent": "base", "stage": "test", **(manifest_extra or {})}
    )

    def fill(tmp: Path) -> None:
        shutil.copytree(base, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST))
        if scale is not None:
            from safetensors.torch import load_file, save_file

            tensors = load_file(tmp / "model.safetensors")
            for name in tensors:
                if name.endswith("mlp.down_proj.weight"):
                    tensors[name] = tensors[name] * scale
            save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
        if template_note is not None:
            tpl = tmp / "chat_template.jinja"
            tpl.write_text(f"{{# {template_note} #}}" + tpl.read_text())

    return write_checkpoint(Path(dest), fill, manifest)
