"""Promotion gates: candidate vs the served checkpoint on identical items, with paired bootstrap CIs.

A policy (YAML) lists gates; each names a metric and one threshold:
- ``max_drop_points``  (``mmlu.acc``, ``mmlu.score``, ``cmmlu.acc``, ``cmmlu.score``): the candidate may be
  at most X points (percentage points of accuracy, or of the mean probability of the correct letter) worse;
- ``min_fall_pct``  (``domain.ppl``/``domain.bpb``): perplexity must fall by at least Y%;
- ``max_rise_pct``  (``general.ppl``/``general.bpb``): perplexity may rise by at most Z%.
  ``general_en.*`` and ``general_zh.*`` gate one language of the general held-out set alone: the combined
  figure is dominated by Chinese (most of its tokens), so Chinese gains could hide English forgetting.
- ``max_drop_points`` on ``answers.score`` (the answers suite): the mean judge score of the answers to
  the frozen held-out questions, in points (score × 100); ``max_drop_points: 0`` with significance
  required is "not significantly worse". The two evals must have answered byte-identical prompts.
  ``answers_en.score`` and ``answers_zh.score`` read the questions of one language alone (like
  ``general_en``): the suite is mostly Chinese, so a candidate that stops answering English questions in
  English could still gain overall. "Not measured" (passes) when the suite has no question of that language.

- ``prefs.margin`` and ``prefs.win`` (held-out mined preference pairs, training/eval/prefs.py): the mean
  change of log p(chosen) - log p(rejected), in nats (DPO's implicit reward margin of the candidate with
  the baseline as reference), and the share of pairs whose chosen answer is the likelier one, in points.
  A cycle whose export held out no pairs has no ``prefs`` part in either eval: its prefs gates pass as
  "not measured" (the answers gates still bind).

``min_gain_points`` (the same metrics) is the other direction: the candidate must be at least X points
better (significantly so when significance is required).

A gate with ``stages`` applies only to a candidate that trained one of them since the baseline (the
stages are read from the checkpoints' manifests): CPT must lower domain bits/byte, while a candidate that
learnt only from feedback (SFT, DPO, KTO) is judged by what those stages change (its answers) and must
not regress elsewhere. A gate that does not apply is shown as "not required", and passes.

``require_significance`` trusts only differences whose 95% CI excludes zero: a regression beyond the
threshold fails only if it is significant, and a required improvement counts only if it is significant.
A partial eval (a part missing, or ``--limit``) never passes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from training.eval.data import EvalDataError

POLICY_DIR = Path(__file__).parent / "policies"
DEFAULT_POLICY = POLICY_DIR / "default.yaml"

Metric = Literal[
    "mmlu.acc",
    "mmlu.score",
    "cmmlu.acc",
    "cmmlu.score",
    "domain.ppl",
    "domain.bpb",
    "general.ppl",
    "general.bpb",
    "general_en.ppl",
    "general_en.bpb",
    "general_zh.ppl",
    "general_zh.bpb",
    "answers.score",
    "answers_en.score",
    "answers_zh.score",
    "prefs.margin",
    "prefs.win",
]
POINT_METRICS = (".acc", ".score", ".win", ".margin")  # thresholds in points (nats for prefs.margin)


class GateRule(BaseModel):
    metric: Metric = Field(description="What is compared.")
    max_drop_points: float | None = Field(
        None, description="MC, answers and prefs metrics: allowed drop in points (nats for prefs.margin)."
    )
    min_gain_points: float | None = Field(
        None, description="MC, answers and prefs metrics: required gain in points (nats for prefs.margin)."
    )
    min_fall_pct: float | None = Field(None, description="Perplexity: required fall in percent.")
    max_rise_pct: float | None = Field(None, description="Perplexity: allowed rise in percent.")
    require_significance: bool | None = Field(None, description="Overrides the policy default for this gate.")
    stages: list[Literal["cpt", "sft", "dpo", "kto"]] | None = Field(
        None,
        description="Applies only to a candidate that trained one of these stages since the baseline "
        "(None: every candidate).",
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> GateRule:
        kinds = ("max_drop_points", "min_gain_points", "min_fall_pct", "max_rise_pct")
        set_ = [k for k in kinds if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"gate on {self.metric} needs exactly one of {'/'.join(kinds)}")
        in_points = self.metric.endswith(POINT_METRICS)
        if in_points != (set_[0] in ("max_drop_points", "min_gain_points")):
            raise ValueError(f"{set_[0]} does not apply to {self.metric}")
        return self


class GatePolicy(BaseModel):
    confidence: float = Field(
        0.95, gt=0, lt=1, description="Two-sided confidence of the bootstrap intervals."
    )
    bootstrap_samples: int = Field(2000, ge=100, description="Paired bootstrap resamples per delta.")
    seed: int = Field(0, description="Bootstrap seed: the same inputs always give the same intervals.")
    require_significance: bool = Field(False, description="Default for gates that do not say.")
    gates: dict[str, GateRule] = Field(default_factory=dict)


def load_policy(path: Path | None = None) -> GatePolicy:
    path = Path(path) if path else DEFAULT_POLICY
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise EvalDataError(f"{path}: gate policy not found") from e
    except yaml.YAMLError as e:
        raise EvalDataError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from e
    try:
        return GatePolicy.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise EvalDataError(f"{path}: {where}: {err['msg']}") from e


# ---------------------------------------------------------------- paired comparison of two evals


def _bootstrap(stat, n: int, samples: int, seed: int, chunk: int = 250) -> np.ndarray:
    """``stat(idx)`` for ``samples`` resamples of n paired items (idx: (k, n) int array)."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, samples, chunk):
        k = min(chunk, samples - start)
        out.append(stat(rng.integers(0, n, size=(k, n))))
    return np.concatenate(out)


def _ci(values: np.ndarray, confidence: float) -> tuple[float, float]:
    a = (1 - confidence) / 2
    lo, hi = np.quantile(values, [a, 1 - a])
    return float(lo), float(hi)


def _mc_delta(cand: dict, base: dict, bench: str, field_: str, policy: GatePolicy) -> dict:
    if bench not in cand or bench not in base:
        return {"error": f"{bench} missing from the {'candidate' if bench not in cand else 'baseline'} eval"}
    c_items = {r["id"]: r for r in cand[bench]["items"]}
    b_items = {r["id"]: r for r in base[bench]["items"]}
    if set(c_items) != set(b_items):
        common = len(set(c_items) & set(b_items))
        return {
            "error": f"{bench}: the evals scored different items ({common} in common of {len(c_items)}/{len(b_items)})"
        }
    return _paired_points(c_items, b_items, "correct" if field_ == "acc" else "p_correct", policy)


def _paired_points(c_items: dict, b_items: dict, key: str, policy: GatePolicy, scale: float = 100.0) -> dict:
    """Candidate minus baseline in points over the same items (each item's ``key``, 0..1; ``scale`` 1:
    in the key's own unit, nats for a margin), with the bootstrap CI of the mean difference."""
    ids = sorted(c_items)
    c = np.array([float(c_items[i][key]) for i in ids])
    b = np.array([float(b_items[i][key]) for i in ids])
    d = (c - b) * scale
    boot = _bootstrap(lambda idx: d[idx].mean(axis=1), len(d), policy.bootstrap_samples, policy.seed)
    lo, hi = _ci(boot, policy.confidence)
    return {
        "n": len(ids),
        "baseline": float(b.mean() * scale),
        "candidate": float(c.mean() * scale),
        "delta": float(d.mean()),
        "ci": [lo, hi],
        "unit": "points" if scale == 100.0 else "nats",
    }


def _ppl_delta(cand: dict, base: dict, part: str, field_: str, policy: GatePolicy) -> dict:
    part, _, lang = part.partition("_")  # general_en: the English texts of the general set only
    if part not in cand or part not in base:
        return {
            "error": f"{part} perplexity missing from the {'candidate' if part not in cand else 'baseline'} eval"
        }
    if cand[part].get("version") != base[part].get("version"):
        return {
            "error": f"{part}: held-out set versions differ ({cand[part].get('version')} vs {base[part].get('version')})"
        }
    c_docs = {r["id"]: r for r in cand[part]["docs"]}
    b_docs = {r["id"]: r for r in base[part]["docs"]}
    if set(c_docs) != set(b_docs):
        return {"error": f"{part}: the evals scored different texts"}
    if lang:
        c_docs = {k: v for k, v in c_docs.items() if k.startswith(f"{lang}/")}
        b_docs = {k: v for k, v in b_docs.items() if k.startswith(f"{lang}/")}
        if not c_docs:
            return {"error": f"{part}: no {lang} texts in the eval"}
    ids = sorted(c_docs)
    cn, bn = (np.array([docs[i]["nll"] for i in ids]) for docs in (c_docs, b_docs))
    if field_ == "ppl":
        ct, bt = (np.array([docs[i]["tokens"] for i in ids], dtype=float) for docs in (c_docs, b_docs))
        if not np.array_equal(ct, bt):
            return {
                "error": f"{part}: the tokenizers differ, so perplexity per token does not compare; gate on {part}.bpb"
            }
    else:  # bits per byte: the same bytes for both, whatever the tokenizer
        ct = bt = np.array([c_docs[i]["bytes"] for i in ids], dtype=float) * math.log(2)

    def value(nll, den, idx=None):
        s_nll = nll[idx].sum(axis=-1) if idx is not None else nll.sum()
        s_den = den[idx].sum(axis=-1) if idx is not None else den.sum()
        return np.exp(s_nll / s_den) if field_ == "ppl" else s_nll / s_den

    b_val, c_val = float(value(bn, bt)), float(value(cn, ct))
    boot = _bootstrap(
        lambda idx: (value(cn, ct, idx) / value(bn, bt, idx) - 1) * 100,
        len(ids),
        policy.bootstrap_samples,
        policy.seed,
    )
    lo, hi = _ci(boot, policy.confidence)
    return {
        "n": len(ids),
        "baseline": b_val,
        "candidate": c_val,
        "delta": (c_val / b_val - 1) * 100,
        "ci": [lo, hi],
        "unit": "%",
    }


def _answers_delta(cand: dict, base: dict, policy: GatePolicy, lang: str | None = None) -> dict:
    """Mean judge score of the answers suite (or of its ``lang`` questions), candidate minus baseline, in
    points, paired by question."""
    if "answers" not in cand or "answers" not in base:
        return {
            "error": f"answers missing from the {'candidate' if 'answers' not in cand else 'baseline'} eval"
        }
    c, b = cand["answers"], base["answers"]
    if c.get("sha256") != b.get("sha256"):
        return {"error": "answers: the evals answered different prompts (frozen files differ)"}
    if c.get("judge") != b.get("judge"):
        return {"error": f"answers: judged with different settings ({c.get('judge')} vs {b.get('judge')})"}
    c_items, b_items = ({r["id"]: r for r in part["items"]} for part in (c, b))
    if set(c_items) != set(b_items) or not c_items:
        return {"error": "answers: the evals scored different questions"}
    if lang is not None:
        c_items, b_items = (
            {k: r for k, r in items.items() if r.get("lang") == lang} for items in (c_items, b_items)
        )
        if not c_items:
            return {"absent": f"the answers suite has no {lang} questions: not measured"}
    return _paired_points(c_items, b_items, "score", policy)


def _prefs_delta(cand: dict, base: dict, field_: str, policy: GatePolicy) -> dict:
    """Held-out preference pairs, candidate minus baseline, paired by pair: the margin in nats, or the
    share of pairs won in points."""
    if "prefs" not in cand and "prefs" not in base:
        return {"absent": "no held-out mined pairs in this cycle (mining.heldout_pairs): not measured"}
    if "prefs" not in cand or "prefs" not in base:
        return {"error": f"prefs missing from the {'candidate' if 'prefs' not in cand else 'baseline'} eval"}
    c, b = cand["prefs"], base["prefs"]
    if c.get("sha256") != b.get("sha256"):
        return {"error": "prefs: the evals scored different pairs (the files differ)"}
    c_items, b_items = ({r["id"]: r for r in part["items"]} for part in (c, b))
    if set(c_items) != set(b_items) or not c_items:
        return {"error": "prefs: the evals scored different pairs"}
    return _paired_points(c_items, b_items, field_, policy, scale=1.0 if field_ == "margin" else 100.0)


def delta(cand: dict, base: dict, metric: str, policy: GatePolicy) -> dict:
    part, field_ = metric.split(".")
    if part == "answers":
        return _answers_delta(cand, base, policy)
    if part.startswith("answers_"):
        return _answers_delta(cand, base, policy, lang=part.removeprefix("answers_"))
    if part == "prefs":
        return _prefs_delta(cand, base, field_, policy)
    if field_ in ("acc", "score"):
        return _mc_delta(cand, base, part, field_, policy)
    return _ppl_delta(cand, base, part, field_, policy)


def _fmt(d: dict) -> str:
    u = {"points": " pts", "nats": " nats"}.get(d["unit"], "%")
    return f"Δ {d['delta']:+.2f}{u} (CI {d['ci'][0]:+.2f}..{d['ci'][1]:+.2f})"


def evaluate_rule(rule: GateRule, d: dict, require_sig: bool) -> tuple[bool, str]:
    if "absent" in d:  # an optional part neither eval has (prefs when nothing was held out)
        return True, d["absent"]
    if "error" in d:
        return False, d["error"]
    lo, hi = d["ci"]
    text = _fmt(d)
    if rule.min_gain_points is not None:
        g = rule.min_gain_points
        if d["delta"] < g:
            return False, f"{text}: must rise by at least {g:g} pts"
        if require_sig and lo <= 0:
            return False, f"{text}: rose by {d['delta']:.2f} pts but the rise is not significant"
        return True, f"{text}: rose by at least {g:g} pts"
    if rule.max_drop_points is not None:
        x = rule.max_drop_points
        if d["delta"] >= -x:
            return True, f"{text}: within the allowed drop of {x:g} pts"
        if require_sig and hi >= 0:
            return True, f"{text}: drop beyond {x:g} pts but not significant"
        return False, f"{text}: drops more than the allowed {x:g} pts" + (" (significant)" if hi < 0 else "")
    if rule.min_fall_pct is not None:
        y = rule.min_fall_pct
        if d["delta"] > -y:
            return False, f"{text}: must fall by at least {y:g}%"
        if require_sig and hi >= 0:
            return False, f"{text}: fell by {-d['delta']:.2f}% but the fall is not significant"
        return True, f"{text}: fell by at least {y:g}%"
    z = rule.max_rise_pct
    assert z is not None
    if d["delta"] <= z:
        return True, f"{text}: within the allowed rise of {z:g}%"
    if require_sig and lo <= 0:
        return True, f"{text}: rise beyond {z:g}% but not significant"
    return False, f"{text}: rises more than the allowed {z:g}%" + (" (significant)" if lo > 0 else "")


def compare(cand: dict, base: dict, policy: GatePolicy, metrics: list[str] | None = None) -> dict[str, dict]:
    """Every metric both evals have (or the given ones) → delta with CI and whether it is significant."""
    if metrics is None:
        metrics = list(Metric.__args__)  # type: ignore[attr-defined]
        # a part neither eval ran (no answers suite, no held-out pairs, or an answers-only comparison) is
        # left out rather than listed as missing
        source = lambda m: m.split(".")[0].split("_")[0]  # noqa: E731  general_en.bpb -> general
        metrics = [m for m in metrics if source(m) in cand or source(m) in base]
    out = {}
    for m in metrics:
        d = delta(cand, base, m, policy)
        if "absent" in d:  # e.g. answers_en on a suite without English questions: nothing to show
            continue
        if "error" not in d:
            d["significant"] = d["ci"][0] > 0 or d["ci"][1] < 0
        out[m] = d
    return out


def applies(rule: GateRule, trained: list[str] | None) -> bool:
    """Whether a gate binds a candidate that trained ``trained`` since the baseline (None: unknown, so
    every gate binds)."""
    return rule.stages is None or trained is None or bool(set(rule.stages) & set(trained))


def decide(cand: dict, base: dict, policy: GatePolicy, trained: list[str] | None = None) -> dict:
    """The gate decision: pass/fail per gate with reasons; overall pass only if every gate passes.

    ``trained``: the stages the candidate trained since the baseline; gates for other stages are shown
    as not required (None: every gate is required)."""
    rows, reasons = [], []
    for label, ev in (("candidate", cand), ("baseline", base)):
        if not ev.get("complete"):
            missing = ", ".join(ev.get("missing") or []) or "run with --limit"
            reasons.append(f"the {label} eval is partial ({missing}): a partial eval never passes")
    if cand.get("fingerprint") != base.get("fingerprint"):
        reasons.append("the two evals were run with different settings (suite, shots, data or subset)")
    for name, rule in policy.gates.items():
        d = delta(cand, base, rule.metric, policy)
        if "error" not in d and "absent" not in d:
            d["significant"] = d["ci"][0] > 0 or d["ci"][1] < 0
        req = policy.require_significance if rule.require_significance is None else rule.require_significance
        if applies(rule, trained):
            ok, why = evaluate_rule(rule, d, req)
        else:
            ok = True
            shown = _fmt(d) + ": " if "error" not in d and "absent" not in d else ""
            why = f"{shown}not required (the candidate trained {', '.join(trained or [])}; this gate is for {', '.join(rule.stages or [])})"
        rows.append(
            {
                "gate": name,
                "metric": rule.metric,
                "passed": ok,
                "reason": why,
                "require_significance": req,
                "required": applies(rule, trained),
                **d,
            }
        )
        if not ok:
            reasons.append(f"{name}: {why}")
    if not policy.gates:
        reasons.append("the policy has no gates")
    return {
        "passed": not reasons,
        "candidate": cand.get("checkpoint", {}),
        "baseline": base.get("checkpoint", {}),
        "suite": cand.get("name"),
        "policy": policy.model_dump(),
        "trained": trained,
        "gates": rows,
        "reasons": reasons,
    }
