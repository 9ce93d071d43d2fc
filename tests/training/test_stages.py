"""CPT → SFT → DPO on the embedded model: a few real steps each on a repeated batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.conftest import TINY
from training.__main__ import run_stage
from training.stages.common import RunError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(base_model_dir, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")

    def stage(name: str, model: object, **recipe: object):
        paths = {"model": str(model), "dataset": str(tiny_data[name]), "output_dir": str(root / name)}
        return run_stage(name, {**TINY, **paths, **recipe})

    cpt = stage(
        "cpt",
        base_model_dir,
        max_steps=4,
        learning_rate=1e-4,
        eval_steps=2,
        freeze_bottom_pct=50,
        embed_lr_ratio=0.1,
        merge_alpha=0.2,
        early_stop_margin=100.0,
    )
    sft = stage("sft", cpt.output, max_steps=4, learning_rate=1e-4, max_length=128)
    dpo = stage("dpo", sft.output, max_steps=3, learning_rate=5e-5)
    return {"cpt": cpt, "sft": sft, "dpo": dpo}


@pytest.mark.parametrize("stage", ["cpt", "sft", "dpo"])
def test_loss_falls_and_checkpoint_is_complete(chain, stage):
    result = chain[stage]
    assert result.metrics["loss"] < result.metrics["first_loss"]
    folder = result.output
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "chat_template.jinja",
        "report.png",
        "report.html",
    ):
        assert (folder / name).exists(), name
    m = json.loads((folder / "manifest.json").read_text())
    assert (
        m["stage"] == stage and m["steps"] == result.steps and len(next(iter(m["datasets"].values()))) == 64
    )
    # the recipe as the trainer ran it: the TRL config, with Keel's final folder as its output_dir
    assert m["config"]["max_steps"] == {"cpt": 4, "sft": 4, "dpo": 3}[stage] and m["git_commit"]
    assert Path(m["config"]["output_dir"]).resolve() == folder.resolve()
    panels = {"cpt": "validation perplexity", "sft": "learning rate", "dpo": "DPO rewards"}[stage]
    assert (
        "training loss, learning rate" in (folder / "report.html").read_text()
        and panels in (folder / "report.html").read_text()
    )
    assert not list(folder.parent.glob(f".{folder.name}.*"))  # no temp or work folder left behind


def test_lineage(chain):
    sft = json.loads((chain["sft"].output / "manifest.json").read_text())
    dpo = json.loads((chain["dpo"].output / "manifest.json").read_text())
    assert sft["parent"] == "cpt" and dpo["parent"] == "sft"
    assert dpo["reference"] == str(chain["sft"].output)


def test_frozen_layers_keep_the_parents_weights(chain, base_model_dir):
    """freeze_bottom_pct=50: the bottom 15 of 30 layers keep the parent's weights (merge_alpha averages a
    tensor with itself there: equal up to fp32 rounding, ~1e-7 here), every layer above moved (~1e-4)."""
    from safetensors.torch import load_file

    parent = load_file(base_model_dir / "model.safetensors")
    child = load_file(chain["cpt"].output / "model.safetensors")

    def moved(layer: int) -> float:
        names = [n for n in parent if n.startswith(f"model.layers.{layer}.")]
        assert names
        return max((child[n] - parent[n]).abs().max().item() for n in names)

    frozen, trained = [moved(i) for i in range(15)], [moved(i) for i in range(15, 30)]
    assert max(frozen) < 1e-6 and min(trained) > 1e-5, (frozen, trained)
    assert (child["model.embed_tokens.weight"] - parent["model.embed_tokens.weight"]).abs().max() > 0


def test_cpt_reports_validation_ppl_and_defences(chain):
    m = json.loads((chain["cpt"].output / "manifest.json").read_text())
    assert m["metrics"]["eval_domain_ppl"] > 1 and m["metrics"]["eval_general_ppl"] > 1
    assert m["frozen_layers"] == 15  # 50% of SmolLM2's 30 layers
    assert m["group_lrs"] == pytest.approx([1e-5, 1e-4])  # embed_tokens/lm_head at 0.1x the main LR
    records = [json.loads(x) for x in (chain["cpt"].output / "metrics.jsonl").read_text().splitlines()]
    # eval_on_start gives the baseline (step 0) the early stop compares against
    assert any(r["step"] == 0 and "eval_general_ppl" in r for r in records)


def test_dpo_margin_rises(chain):
    records = [json.loads(x) for x in (chain["dpo"].output / "metrics.jsonl").read_text().splitlines()]
    margins = [r["rewards/margins"] for r in records if "rewards/margins" in r]
    assert margins[-1] > margins[0] and chain["dpo"].metrics["rewards/accuracies"] > 0


def test_sft_checkpoint_keeps_the_model_template(chain, base_model_dir):
    assert "{% generation %}" not in (chain["sft"].output / "chat_template.jinja").read_text()


def test_bad_inputs_fail_before_loading(tmp_path, tiny_data, base_model_dir):
    with pytest.raises(RunError, match="not a Hugging Face model folder"):
        run_stage(
            "sft",
            {
                "model": str(tmp_path / "nope"),
                "dataset": str(tiny_data["sft"]),
                "output_dir": str(tmp_path / "o"),
            },
        )
    with pytest.raises(RunError, match="not a prepared snapshot"):
        run_stage(
            "sft", {"model": str(base_model_dir), "dataset": str(tmp_path), "output_dir": str(tmp_path / "o")}
        )
    assert not (tmp_path / "o").exists()


# One child process loads every checkpoint in turn: vLLM is imported once and its engine runs in-process
# (VLLM_ENABLE_V1_MULTIPROCESSING=0), ~4 s a model instead of a fresh ~70 s process each. The model loading
# and generation code is the same one the served api_server runs (the serving tests cover that process).
VLLM_LOAD_ALL = """
import gc, json, sys, traceback
from vllm import LLM, SamplingParams
for stage, folder in json.loads(sys.argv[1]).items():
    try:
        llm = LLM(model=folder, enforce_eager=True, dtype="float32", max_model_len=512)
        o = llm.chat([{"role": "user", "content": "What is TiDB?"}], SamplingParams(max_tokens=8, temperature=0))
        print("TOKENS", stage, json.dumps(list(o[0].outputs[0].token_ids)), flush=True)
        del llm
        gc.collect()
    except Exception:
        print("FAILED", stage, json.dumps(traceback.format_exc()), flush=True)
"""


@pytest.fixture(scope="module")
def vllm_loads(chain, tmp_path_factory):
    pytest.importorskip("vllm")
    folders = {stage: str(chain[stage].output) for stage in ("cpt", "sft", "dpo")}
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "OMP_NUM_THREADS": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }
    run = subprocess.run(
        [sys.executable, "-c", VLLM_LOAD_ALL, json.dumps(folders)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path_factory.mktemp("vllm-loads"),
    )
    out: dict[str, str] = {}
    for line in run.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("TOKENS", "FAILED"):
            stage, _, value = rest.partition(" ")
            out[stage] = value if kind == "TOKENS" else "failed: " + json.loads(value)
    return out, run


def transformers_greedy(folder, n: int = 8) -> list[int]:
    """The same chat prompt, rendered by the folder's template, greedy in transformers fp32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is TiDB?"}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if not isinstance(ids, torch.Tensor) else ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=n, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


@pytest.mark.parametrize("stage", ["cpt", "sft", "dpo"])
def test_vllm_serves_every_checkpoint(vllm_loads, chain, stage):
    """Each checkpoint of the chain loads in vLLM (offline engine, eager, fp32) and generates the same
    greedy tokens as transformers on the same folder (so vLLM read the trained weights, not others)."""
    out, run = vllm_loads
    assert stage in out, f"exit {run.returncode}: {run.stderr[-3000:]}"
    assert not out[stage].startswith("failed"), out[stage][-3000:]
    tokens = json.loads(out[stage])
    assert tokens and tokens == transformers_greedy(chain[stage].output)[: len(tokens)]


def test_lora_adapters_are_merged_on_save(base_model_dir, tiny_data, tmp_path):
    from safetensors import safe_open

    res = run_stage(
        "sft",
        {
            **TINY,
            "model": str(base_model_dir),
            "dataset": str(tiny_data["sft"]),
            "output_dir": str(tmp_path / "lora"),
            "max_steps": 2,
            "learning_rate": 1e-3,
            "lora_r": 4,
            "report": False,
        },
    )
    assert not (res.output / "adapter_config.json").exists()
    with (
        safe_open(str(res.output / "model.safetensors"), "pt") as f,
        safe_open(str(base_model_dir / "model.safetensors"), "pt") as b,
    ):
        keys = set(f.keys())
        assert keys == set(b.keys())  # plain weight names vLLM expects, no lora_A/lora_B
        name = "model.layers.0.self_attn.q_proj.weight"
        assert not f.get_tensor(name).equal(b.get_tensor(name))  # the merged delta is there


def test_cpt_stops_early_when_general_ppl_rises(base_model_dir, tmp_path):
    """A high LR on repeated Chinese text pushes English perplexity up; the run stops and says when."""
    from tests.training.conftest import DOMAIN_TEXT, write_jsonl
    from training.data.snapshot import write_snapshot

    english = (
        "The committee met on Tuesday to discuss the new library, which will open next spring near the "
        "river. Several residents asked whether the old reading room would be kept, and the architect "
        "explained that its windows and wooden shelves are part of the design."
    )

    def fill(tmp):
        write_jsonl(tmp / "train.jsonl", [{"text": DOMAIN_TEXT}] * 4)
        write_jsonl(tmp / "eval" / "general.jsonl", [{"text": english}])
        return {"rows": 4}

    snap = write_snapshot(tmp_path / "snap", "cpt", fill)
    res = run_stage(
        "cpt",
        {
            **TINY,
            "model": str(base_model_dir),
            "dataset": str(snap.path),
            "output_dir": str(tmp_path / "cpt"),
            "max_steps": 8,
            "learning_rate": 1e-3,
            "warmup_steps": 0.0,
            "eval_steps": 1,
            "early_stop_margin": 0.05,
            "report": False,
        },
    )
    m = json.loads((res.output / "manifest.json").read_text())
    assert m["early_stopped_at"] is not None and res.steps == m["early_stopped_at"] < 8
    records = [json.loads(x) for x in (res.output / "metrics.jsonl").read_text().splitlines()]
    general = [r["eval_general_ppl"] for r in records if "eval_general_ppl" in r]
    assert general[-1] > general[0] * 1.05
