from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.harness import PlatformProcess


def derive_checkpoint(
    base: Path,
    dest: Path,
    version: str,
    *,
    scale: float | None = None,
    template_note: str | None = None,
    manifest_extra: dict | None = None,
) -> Path:
    """A copy of `base` with perturbed weights (same architecture) or a changed chat template (forces blue/green)."""
    shutil.copytree(base, dest)
    if scale is not None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(dest / "model.safetensors")
        for name in tensors:
            if name.endswith("mlp.down_proj.weight"):
                tensors[name] = tensors[name] * scale
        save_file(tensors, dest / "model.safetensors", metadata={"format": "pt"})
    if template_note is not None:
        tpl = dest / "chat_template.jinja"
        tpl.write_text(f"{{# {template_note} #}}" + tpl.read_text())
    manifest = json.loads((base / "manifest.json").read_text())
    manifest.update({"version": version, "parent": "base", "stage": "test", **(manifest_extra or {})})
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


@pytest.fixture(scope="module")
def swap_platform(base_model_dir, tmp_path_factory):
    """A platform of its own with a managed engine: swaps must not disturb the session platform."""
    root = tmp_path_factory.mktemp("swap")
    p = PlatformProcess(
        data_dir=root / "data",
        model_dir=base_model_dir,
        # 500 s: under the tests' steady load a blue/green engine starts in 130-230 s on an idle 2-core host
        # (the serving engine's EngineCore spins on the second core while its worker computes) and slower
        # on a busier CI host; a start cut short at the timeout only restarts from zero on the retry.
        overrides=["swap.drain_timeout_s=60", "swap.start_timeout_s=500", "router.enabled=false"],
    ).start()
    p.root = root  # type: ignore[attr-defined]
    try:
        yield p
    finally:
        p.stop()
