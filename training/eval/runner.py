"""Evaluate one checkpoint: MMLU, CMMLU, domain and general perplexity → ``<ckpt>/eval/<name>.json``;
with a frozen prompts file (``answers``), also the answers suite (training/eval/answers.py); with held-out
mined pairs (``prefs``), the preference margin (training/eval/prefs.py).

    keel eval run CHECKPOINT --suite gate --data ../shared/data     (the CLI builds an EvalConfig and calls run_eval)

The eval JSON keeps per-item scores (letters, p(correct)) and per-document losses, so two checkpoints
can later be compared on identical items with paired bootstrap intervals.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from keelcommon.files import write_json_atomic
from training.checkpoint import Manifest, load_manifest, update_manifest
from training.eval import perplexity
from training.eval.data import EvalDataError, MCBenchmark, MCSubject, gate_subset, load_benchmark
from training.eval.heldout import HeldoutSet, domain_heldout, general_heldout
from training.eval.mc import MCScoreConfig, score_benchmark, summarize
from training.eval.model import resolve_dtype

SCHEMA = 1
SCORING_REVISION = 2
PARTS = ("mmlu", "cmmlu", "domain", "general")


@dataclass
class EvalConfig:
    suite: Literal["gate", "full", "answers"] = "gate"  # answers: the answers suite alone
    shots: int = 0  # 0 or 5
    limit: int | None = (
        None  # at most this many questions per subject / texts per part; makes the eval partial
    )
    mmlu: Path | None = None  # MMLU data (original CSV layout, or a Parquet/JSONL export)
    cmmlu: Path | None = None  # CMMLU data (CSV release, or a Parquet/JSONL export)
    general: Path | None = None  # folder with en/valid.jsonl and zh/valid.jsonl
    domain: Path | None = None  # domain corpus folder with faq_qa.jsonl and docs/
    gate_per_subject: int = 10  # gate suite: questions per subject (hash-ranked, fixed)
    gate_general_docs: int = 50  # gate suite: general texts per language (hash-ranked, fixed)
    seed: int = 0  # selects the gate subset; change it and every checkpoint must be re-evaluated
    batch_tokens: int = 2048
    ppl_window: int = 1024
    ppl_stride: int = 512
    threads: int | None = None  # torch threads; None leaves torch's default
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"  # model body; the vocab projection stays fp32
    backend: Literal["transformers", "vllm"] = "vllm"  # scores letters and perplexity (as EvalSettings)
    vllm_reserved_cpus: int = 0  # vLLM on CPU: cores left out of the engine's OpenMP binding
    answers: Path | None = None  # frozen prompts of the answers suite (JSONL written by the platform)
    answers_max_tokens: int = 128  # longest generated answer
    prefs: Path | None = None  # held-out mined preference pairs (the flywheel export's prefs part)

    def parts(self) -> tuple[str, ...]:
        """The parts a complete eval of this config has."""
        if self.suite == "answers":
            return ("answers",)
        extra = tuple(k for k in ("answers", "prefs") if getattr(self, k) is not None)
        return (*PARTS, *extra)

    @property
    def name(self) -> str:
        return f"{self.suite}-{self.shots}shot"

    def fingerprint(self) -> str:
        """What decides which items are scored and how; equal fingerprints compare item for item."""
        keys = ("suite", "shots", "limit", "mmlu", "cmmlu", "general", "domain", "gate_per_subject")
        d = {
            k: str(getattr(self, k)) for k in (*keys, "gate_general_docs", "seed", "ppl_window", "ppl_stride")
        }
        # Scores differ slightly between dtypes and backends: compare like with like only.
        d["dtype"], d["backend"] = resolve_dtype(self.dtype), self.backend
        # Bumped when how a backend scores changes (2: vLLM scores perplexity too), so stored evals re-run.
        d["scoring"] = SCORING_REVISION
        if self.answers is not None:  # the prompts by content: a re-frozen identical file is the same eval
            from training.eval.answers import file_sha256

            path = Path(self.answers)
            d["answers"] = file_sha256(path) if path.is_file() else f"missing:{path}"
            d["answers_max_tokens"] = self.answers_max_tokens
        if self.prefs is not None:
            path = Path(self.prefs)
            d["prefs"] = (
                hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else f"missing:{path}"
            )
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EvalOutcome:
    path: Path
    result: dict = field(repr=False)


def eval_path(checkpoint: Path, cfg: EvalConfig) -> Path:
    return Path(checkpoint) / "eval" / f"{cfg.name}.json"


def _limited(bench: MCBenchmark, limit: int | None) -> MCBenchmark:
    if limit is None:
        return bench
    subjects = {
        k: MCSubject(s.name, s.display, s.categories, s.test[:limit], s.dev)
        for k, s in bench.subjects.items()
    }
    return MCBenchmark(bench.name, bench.source, subjects)


def _ppl_part(sm, hs: HeldoutSet, cfg: EvalConfig, bar, scorer=None) -> dict:
    pcfg = perplexity.PerplexityConfig(window=cfg.ppl_window, stride=cfg.ppl_stride)
    parts, docs = {}, []
    for name, texts in hs.parts.items():
        texts = texts[: cfg.limit] if cfg.limit is not None else texts
        recs = perplexity.score_texts(sm, [t.text for t in texts], pcfg, progress=None, scorer=scorer)
        bar.update(len(texts))
        parts[name] = perplexity.summarize(recs)
        docs.extend({"id": f"{name}/{t.id}", **r} for t, r in zip(texts, recs, strict=True))
    return {"version": hs.version, "summary": perplexity.summarize(docs), "parts": parts, "docs": docs}


def run_eval(checkpoint: Path, cfg: EvalConfig, update_checkpoint_manifest: bool = True) -> EvalOutcome:
    """Score ``checkpoint`` and write its eval JSON beside it (atomically); link it from the manifest."""
    import torch
    from tqdm import tqdm

    from training.eval.model import load_scoring_model

    checkpoint = Path(checkpoint)
    manifest = load_manifest(checkpoint)  # a folder without a manifest is not a checkpoint: refuse early
    if cfg.shots not in (0, 5):
        raise EvalDataError(f"shots must be 0 or 5, not {cfg.shots}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # Read and check every input before the (slow) model work: bad data fails in a second, not at the end.
    benches: dict[str, MCBenchmark] = {}
    only_answers = cfg.suite == "answers"
    if only_answers and cfg.answers is None:
        raise EvalDataError("the answers suite needs a frozen prompts file (--answers, `keel eval prompts`)")
    prompt_set = None
    if cfg.answers is not None:
        from training.eval.answers import load_prompts

        prompt_set = load_prompts(Path(cfg.answers))
    pref_set = None
    if cfg.prefs is not None and not only_answers:
        from training.eval.prefs import load_pairs

        pref_set = load_pairs(Path(cfg.prefs))
    for name in ("mmlu", "cmmlu"):
        path = getattr(cfg, name)
        if path is not None and not only_answers:
            b = load_benchmark(Path(path), name)  # type: ignore[arg-type]
            b = gate_subset(b, cfg.gate_per_subject, cfg.seed) if cfg.suite == "gate" else b
            benches[name] = _limited(b, cfg.limit)
    heldout: dict[str, HeldoutSet] = {}
    if cfg.domain is not None and not only_answers:
        # The gate suite scores the FAQ answers; the full suite adds the FAQ pages they came from.
        heldout["domain"] = domain_heldout(Path(cfg.domain), include_docs=cfg.suite == "full")
    if cfg.general is not None and not only_answers:
        per_lang = cfg.gate_general_docs if cfg.suite == "gate" else None
        heldout["general"] = general_heldout(Path(cfg.general), per_lang, cfg.seed)

    # One engine scores everything: vLLM (letters and held-out texts) or transformers; never both, so a
    # large checkpoint is not held twice in memory.
    sm, scorer = None, None
    if cfg.backend == "vllm":
        from training.eval.vllm_backend import VLLMScorer

        dtype = resolve_dtype(cfg.dtype)
        scorer = VLLMScorer(checkpoint, dtype=dtype, reserved_cpus=cfg.vllm_reserved_cpus)
    else:
        sm = load_scoring_model(checkpoint, dtype=cfg.dtype)
        dtype = sm.dtype
    total = sum(b.n_test() for b in benches.values()) + sum(
        min(len(v), cfg.limit) if cfg.limit is not None else len(v)
        for hs in heldout.values()
        for v in hs.parts.values()
    )
    total += len(prompt_set.prompts) if prompt_set is not None else 0
    total += len(pref_set.pairs) if pref_set is not None else 0
    result: dict = {
        "schema": SCHEMA,
        "checkpoint": {
            "path": str(checkpoint.resolve()),
            "version": manifest.version_of(checkpoint),
            "parent": manifest.parent,
            "stage": manifest.stage,
        },
        "name": cfg.name,
        "suite": cfg.suite,
        "shots": cfg.shots,
        "fingerprint": cfg.fingerprint(),
        "dtype": dtype,
        "backend": cfg.backend,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "created_at": datetime.now(UTC).isoformat(),
        "timings_s": {},
    }
    mc_cfg = MCScoreConfig(shots=cfg.shots, batch_tokens=cfg.batch_tokens)
    with tqdm(total=total, desc=f"eval {result['checkpoint']['version']} ({cfg.name})", unit="item") as bar:
        try:
            for name, bench in benches.items():
                t0 = time.perf_counter()
                records = score_benchmark(sm, bench, mc_cfg, progress=bar.update, scorer=scorer)
                result["timings_s"][name] = round(time.perf_counter() - t0, 2)
                result[name] = {
                    "source": bench.source,
                    "summary": summarize(bench, records),
                    "items": records,
                }
            for name, hs in heldout.items():
                t0 = time.perf_counter()
                result[name] = _ppl_part(sm, hs, cfg, bar, scorer)
                result["timings_s"][name] = round(time.perf_counter() - t0, 2)
            if prompt_set is not None:
                from training.eval.answers import run_answers

                t0 = time.perf_counter()
                result["answers"] = run_answers(prompt_set, cfg.answers_max_tokens, sm, scorer, bar.update)
                result["timings_s"]["answers"] = round(time.perf_counter() - t0, 2)
            if pref_set is not None:
                from training.eval.prefs import run_prefs

                t0 = time.perf_counter()
                result["prefs"] = run_prefs(pref_set, sm, scorer, bar.update)
                result["timings_s"]["prefs"] = round(time.perf_counter() - t0, 2)
        finally:
            if scorer is not None:
                scorer.close()
    missing = [p for p in cfg.parts() if p not in result]
    result["missing"] = missing
    # A limited or incomplete run is recorded, but flagged: gates never pass on it.
    result["complete"] = not missing and cfg.limit is None
    out = eval_path(checkpoint, cfg)
    write_json_atomic(out, result)
    if update_checkpoint_manifest:
        rel = str(out.relative_to(checkpoint))

        def link(m: Manifest) -> None:
            m.eval = m.eval or {}
            m.eval.setdefault("runs", {})[cfg.name] = {
                "path": rel,
                "complete": result["complete"],
                "created_at": result["created_at"],
            }

        update_manifest(checkpoint, link)
    return EvalOutcome(out, result)


def load_eval(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise EvalDataError(f"{path}: eval JSON not found") from e
    except json.JSONDecodeError as e:
        raise EvalDataError(f"{path}: not valid JSON: {e.msg}") from e
    if data.get("schema") != SCHEMA:
        raise EvalDataError(f"{path}: unknown eval schema {data.get('schema')!r}")
    return data


def ensure_eval(checkpoint: Path, cfg: EvalConfig, rerun: bool = False) -> EvalOutcome:
    """Reuse the checkpoint's eval JSON when it was made with the same settings; otherwise run it."""
    path = eval_path(checkpoint, cfg)
    if path.exists() and not rerun:
        data = load_eval(path)
        if data.get("fingerprint") == cfg.fingerprint():
            return EvalOutcome(path, data)
    return run_eval(checkpoint, cfg)
