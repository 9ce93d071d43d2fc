"""The cycle's steps on the platform: mining, snapshots, training and evaluation as child processes,
the gate, and promotion through the same PromotionService as `keel promote`.

Every file a cycle writes lives under ``<data_dir>/cycles/<cycle id>/`` (resolved recipes, eval config,
child logs, the export, the CPT snapshot, the report); checkpoints go to ``<checkpoints>/<cycle id>-<stage>``
so a resumed step finds its own output (complete: reused; a resumable state: ``--resume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from flywheel.cycle import CycleRecord, Done, Skip, StepContext, StepRecord
from flywheel.cycle_config import CycleConfig
from keel.cycle.launcher import build_command, end_orphan, run_child
from keel.errors import KeelError
from keel.runtime import Runtime
from keel.store import registry
from keel.store.db import Database

if TYPE_CHECKING:
    from keel.config import KeelSettings


log = logging.getLogger("keel.cycle")

REPO = Path(__file__).resolve().parents[3]
RECIPES = REPO / "training" / "recipes"
_EVAL_PATHS = ("data", "mmlu", "cmmlu", "general", "domain", "policy", "answers")
ANSWERS_PROMPTS = "answers-prompts.jsonl"  # in the cycle folder: the answers suite's frozen prompts
DOC_SUFFIXES = (".md", ".markdown", ".txt", ".rst")


class StepFailed(KeelError):
    """A cycle step could not do its job; the message says why."""


def repo_path(p: str | Path) -> Path:
    """Paths in cycle config and profiles: ~ expanded; relative ones are read from the repository root."""
    q = Path(p).expanduser()
    return q if q.is_absolute() else (REPO / q).resolve()


def sha_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode() + b"\0")
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def doc_index(sources: list[Path]) -> dict[str, str]:
    """Every domain document under ``sources`` → sha256 of its bytes (what "changed" is measured by)."""
    out: dict[str, str] = {}
    for src in sources:
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for p in files:
            if p.suffix.lower() in DOC_SUFFIXES or p.suffix.lower() == ".jsonl":
                out[str(p.resolve())] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def trusted_unreviewed(path: Path) -> int:
    """Rows of a DPO part that train because the trust policy accepted them (no review yet)."""
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return sum(1 for r in rows if r.get("auto_accepted_by") and r.get("status") == "pending")


def kto_labels(path: Path) -> tuple[int, int]:
    """(rated up, rated down) rows of a KTO part."""
    up = down = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                if json.loads(line)["label"]:
                    up += 1
                else:
                    down += 1
    return up, down


class PlatformSteps:
    """CycleSteps over the platform's database, settings and promotion service."""

    def __init__(
        self,
        settings: KeelSettings,
        db: Database,
        promotions,
        store,
        flush: Callable[[], None] | None = None,
        runtime: Runtime | None = None,
        canary=None,
    ):
        self.settings = settings
        self.db = db
        self.promotions = promotions
        self.store = store
        self.flush = flush or (lambda: None)
        # the running platform's loop, live intent router (a passing refit serves at once) and indexer;
        # None on the CLI's offline path
        self.runtime = runtime
        self.canary_service = canary  # keel.checkpoints.canary.CanaryService (None offline)

    def quiet(self) -> contextlib.AbstractContextManager:
        """What the platform holds back while a child trains or evaluates (its background dense embedding)."""
        return self.runtime.quiet() if self.runtime is not None else contextlib.nullcontext()

    # ---- paths -----------------------------------------------------------------------------------------
    def cycle_dir(self, cycle_id: str) -> Path:
        d = self.settings.data_dir / "cycles" / cycle_id
        d.mkdir(parents=True, exist_ok=True)
        return d

    def serving(self) -> dict[str, Any]:
        s = registry.serving(self.db)
        if s is None:  # nothing promoted yet (no `keel up` so far): the base model serves
            from keel.checkpoints.basemodel import ensure_base

            registry.ensure_base_registered(
                self.db, ensure_base(self.settings.checkpoints_dir, self.settings.model.path)
            )
            s = registry.serving(self.db)
        if s is None:
            raise StepFailed("no serving checkpoint in the registry (run `keel up` once)")
        return {"version": s[0], "path": str(s[1])}

    # ---- mine ------------------------------------------------------------------------------------------
    def mine(self, ctx: StepContext) -> Done:
        from keel.cycle.mining import run_mining

        self.flush()  # rows still in the request log's queue belong to this cycle
        res = run_mining(self.db, self.settings)
        st = res["stats"]
        return Done(
            {"run_id": res["run_id"], "pairs": st.get("pairs", 0), "sft": st.get("sft", 0), "stats": st}
        )

    # ---- router ----------------------------------------------------------------------------------------
    def router(self, ctx: StepContext) -> Done | Skip:
        """Refit the intent router on its examples + route flags; it serves only if its held-out test half
        does not get worse (the same decision shape as a checkpoint gate)."""
        from keel.cycle.router_fit import run_router_fit
        from keel.store.router_flags import route_flags

        flags = len(route_flags(self.db))
        if flags < ctx.config.min_route_flags:
            return Skip(f"{flags} route flags (need {ctx.config.min_route_flags})")
        decision = run_router_fit(self.db, self.settings, self.runtime.router if self.runtime else None)
        return Done({k: v for k, v in decision.items() if k != "flag_ids"} | {"flags": flags})

    # ---- snapshots -------------------------------------------------------------------------------------
    def snapshot(self, ctx: StepContext, stage: str) -> Done | Skip:
        if stage == "cpt":
            return self._cpt_snapshot(ctx)
        return self._export_part(ctx, stage)

    def _export(self, ctx: StepContext) -> dict[str, Any]:
        """One export of the pairs, SFT and KTO examples per cycle (shared by the SFT, DPO and KTO steps)."""
        from keel.cycle.mining import run_export

        dest = self.cycle_dir(ctx.cycle_id) / "export"
        if (dest / "snapshot.json").exists():  # resumed: the export was written before
            meta = json.loads((dest / "snapshot.json").read_text(encoding="utf-8"))
            return {
                "path": str(dest),
                "hash": meta["hash"],
                **{k: v["rows"] for k, v in meta["parts"].items()},
            }
        res = run_export(self.db, self.settings, str(dest))
        return {
            "path": res["path"],
            "hash": res["hash"],
            "dpo": res["pairs"],
            "sft": res["sft"],
            "kto": res["kto"],
        }

    def _export_part(self, ctx: StepContext, stage: str) -> Done | Skip:
        exp = self._export(ctx)
        cfg = ctx.config
        part = Path(exp["path"]) / stage
        if not (part / "snapshot.json").exists():  # an export written before this stage existed
            return Skip(f"the cycle's export has no {stage} part", {"export": exp["path"]})
        meta = json.loads((part / "snapshot.json").read_text(encoding="utf-8"))
        rows = int(meta["rows"])
        out: dict[str, Any] = {"path": str(part), "rows": rows, "export": exp["path"], "hash": meta["hash"]}
        if stage == "kto":
            up, down = kto_labels(part / "train.jsonl")
            out |= {"up": up, "down": down}
            need = cfg.min_kto_per_class
            if min(up, down) < need:
                return Skip(
                    f"{up} answers rated up and {down} rated down; KTO needs at least {need} of each "
                    "(cycle.min_kto_per_class)",
                    out,
                )
            return Done(out, hash=meta["hash"])
        if stage == "dpo":
            out["auto_accepted"] = trusted_unreviewed(part / "provenance.jsonl")
        need = cfg.min_sft_examples if stage == "sft" else cfg.min_dpo_pairs
        what = "SFT examples" if stage == "sft" else "pairs (reviewed, or trusted by mining.trust)"
        if rows < need:
            return Skip(
                f"{rows} {what}, fewer than the {need} required (cycle.min_{stage}_{'examples' if stage == 'sft' else 'pairs'})",
                out,
            )
        return Done(out, hash=meta["hash"])

    def _cpt_sources(self, cfg: CycleConfig) -> list[Path]:
        if cfg.cpt_data.sources:
            return [repo_path(s) for s in cfg.cpt_data.sources]
        return [p.resolve() for p in self.settings.rag_corpus_paths]

    def _served_lineage(self) -> set[str]:
        """The serving checkpoint and every checkpoint it was trained from."""
        from keel.store import registry

        got = registry.serving(self.db)
        out: set[str] = set()
        version = got[0] if got else None
        while version and version not in out:
            out.add(version)
            cp = registry.find(self.db, version)
            version = cp.parent if cp else None
        return out

    def _last_doc_index(self, ctx: StepContext) -> dict[str, str]:
        """The document hashes the serving model learned: those of the newest cycle whose CPT checkpoint is
        the serving checkpoint or one of its ancestors ({}: none, so every document is new to it).

        Not simply the last cycle: a cycle whose candidate was rejected (or promoted, then rolled back)
        taught the serving model nothing, so its documents are still to be learned by the next one."""
        lineage = self._served_lineage()
        for c in self.store.list(200):
            if c.cycle_id == ctx.cycle_id or c.status != "succeeded" or c.dry_run:
                continue
            steps = {s.name: s for s in self.store.steps(c.cycle_id)}
            snap, trained = steps.get("snapshot:cpt"), steps.get("train:cpt")
            if (
                snap is None
                or trained is None
                or trained.status != "done"
                or not snap.output.get("doc_index")
            ):
                continue
            if (trained.output or {}).get("version") not in lineage:
                continue
            p = Path(snap.output["doc_index"])
            if p.exists():
                return json.loads(p.read_text(encoding="utf-8"))
        return {}

    def _eval_guard_sets(self) -> list[str]:
        """Every evaluation text the gates use, so no CPT row overlaps it (MMLU/CMMLU are checked by mining)."""
        paths = self.settings.eval.resolved()
        out = []
        if paths.get("domain"):
            out.append(str(paths["domain"] / "faq_qa.jsonl"))
        if paths.get("general"):
            out += [str(p) for p in sorted(Path(paths["general"]).glob("*/valid.jsonl"))]
        return out

    def _cpt_snapshot(self, ctx: StepContext) -> Done | Skip:
        from training.data.prepare import make_prepare_config, prepare
        from training.data.snapshot import SnapshotError, load_snapshot

        cfg = ctx.config
        sources = self._cpt_sources(cfg)
        if not sources:
            return Skip("no domain documents configured (cycle.cpt_data.sources or rag.corpus_paths)")
        missing = [str(s) for s in sources if not s.exists()]
        if missing:
            raise StepFailed(f"CPT source not found: {missing[0]}")
        d = self.cycle_dir(ctx.cycle_id)
        index = doc_index(sources)
        index_path = d / "doc_index.json"
        index_path.write_text(json.dumps(index), encoding="utf-8")
        before = self._last_doc_index(ctx) if cfg.cpt_data.only_changed else {}
        changed = sorted(p for p, h in index.items() if before.get(p) != h)
        out: dict[str, Any] = {
            "doc_index": str(index_path),
            "docs_total": len(index),
            "docs_changed": len(changed),
        }
        if len(changed) < max(cfg.min_cpt_docs, 1):
            return Skip(
                f"{len(changed)} domain documents added or changed since the serving model learned them, fewer than "
                f"{max(cfg.min_cpt_docs, 1)} (cycle.min_cpt_docs)",
                out,
            )
        dest = d / "cpt-snapshot"
        if (dest / "snapshot.json").exists():  # resumed after the snapshot was written
            snap = load_snapshot(dest)
        else:
            whole = {str(s) for s in sources}
            # the whole folders when everything is new (short config); else the changed files themselves
            srcs = sorted(whole) if len(changed) == len(index) else changed
            data = {
                "kind": "cpt",
                "output": str(dest),
                "sources": srcs,
                "general": [str(repo_path(p)) for p in cfg.cpt_data.general],
                "general_eval": [str(repo_path(p)) for p in cfg.cpt_data.general_eval],
                "eval_sets": [str(repo_path(p)) for p in cfg.cpt_data.eval_sets] + self._eval_guard_sets(),
                "ratio": cfg.cpt_data.ratio,
                **cfg.cpt_data.overrides,
            }
            try:
                snap = prepare(make_prepare_config(data))
            except SnapshotError as e:
                raise StepFailed(f"CPT snapshot: {e}") from None
        stats = json.loads((Path(snap.path) / "stats.json").read_text(encoding="utf-8"))
        out |= {
            "path": str(snap.path),
            "hash": snap.hash,
            "rows": stats.get("kept"),
            "stats": str(Path(snap.path) / "stats.json"),
        }
        return Done(out, hash=snap.hash)

    # ---- train -----------------------------------------------------------------------------------------
    def train_output(self, cycle_id: str, stage: str) -> Path:
        """Where a cycle's stage writes its checkpoint (its version is the folder's name)."""
        return self.settings.checkpoints_dir / f"{cycle_id}-{stage}"

    def progress(self, cycle_id: str, step: str) -> dict[str, Any] | None:
        """A running train step's live progress, as its child writes it each optimizer step."""
        from training.checkpoint import PROGRESS_FILE

        kind, _, stage = step.partition(":")
        if kind != "train":
            return None
        out = self.train_output(cycle_id, stage)
        try:
            return json.loads((out.parent / f".{out.name}.work" / PROGRESS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def recipe(self, ctx: StepContext, stage: str, snapshot: dict, parent: dict) -> tuple[dict, Path]:
        st = ctx.config.stage(stage)  # type: ignore[arg-type]
        path = repo_path(st.recipe) if st.recipe else RECIPES / f"smollm2-{stage}.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise StepFailed(f"cannot read recipe {path}: {str(e).splitlines()[0]}") from None
        out = self.train_output(ctx.cycle_id, stage)
        name = out.name
        data |= dict(st.overrides)
        data |= {
            "model": parent["path"],
            "dataset": snapshot["path"],
            "output_dir": str(out),
            "version": name,
            "max_wall_clock_s": st.budget.wall_clock_s,
            "max_train_tokens": st.budget.max_tokens,
        }
        if ctx.config.launcher.threads > 0:
            data["num_threads"] = ctx.config.launcher.threads
        return data, out

    def train(self, ctx: StepContext, stage: str, snapshot: dict, parent: dict) -> Done:
        from training.checkpoint import is_checkpoint, last_complete_state, read_manifest

        data, out = self.recipe(ctx, stage, snapshot, parent)
        d = self.cycle_dir(ctx.cycle_id)
        recipe_path = d / f"train-{stage}.yaml"
        recipe_path.write_text(yaml.safe_dump(data, sort_keys=True, allow_unicode=True), encoding="utf-8")
        log_path = d / f"train-{stage}.log"
        end_orphan(log_path.with_suffix(".pid"))  # a child a dead platform left behind
        work = out.parent / f".{out.name}.work"
        if not is_checkpoint(out):  # finished before a restart: not trained twice
            # only a whole saved state resumes; with none (a save cut short) training starts over
            resume = last_complete_state(work) is not None
            args = [stage, "--config", str(recipe_path), *(["--resume"] if resume else [])]
            argv = build_command(ctx.config.launcher, "training", args, distributed=True)
            log.info(
                "cycle %s: training %s (%s)%s", ctx.cycle_id, stage, out.name, " resumed" if resume else ""
            )
            with self.quiet():
                run_child(argv, ctx.config.launcher, log_path, ctx.cancel_event)
        if not is_checkpoint(out):
            raise StepFailed(f"training {stage} ended without a checkpoint at {out} (log: {log_path})")
        found = read_manifest(out)
        m = found.dump() if found is not None else {}
        cp = registry.add(self.db, out)
        weights = sorted(out.glob("*.safetensors"))
        metrics = m.get("metrics", {})
        return Done(
            {
                "version": cp.version,
                "path": str(out),
                "stage": stage,
                "parent": parent.get("version"),
                "steps": m.get("steps"),
                "loss": metrics.get("loss"),
                "first_loss": metrics.get("first_loss"),
                "budget": m.get("budget"),
                "resumed_from": m.get("resumed_from"),
                "report": str(out / "report.html") if (out / "report.html").exists() else None,
                "log": str(log_path),
            },
            hash=sha_files(weights) if weights else None,
        )

    # ---- evaluate + gate -------------------------------------------------------------------------------
    def _eval_settings(self, ctx: StepContext):
        es = self.settings.eval
        if ctx.config.eval:  # the cycle's own eval settings (e.g. a smaller gate suite in the demo)
            over = {
                k: (str(repo_path(v)) if k in _EVAL_PATHS and v else v) for k, v in ctx.config.eval.items()
            }
            es = type(es).model_validate({**es.model_dump(), **over})
        return es

    def eval_config(self, ctx: StepContext):
        es = self._eval_settings(ctx)
        more = {}
        frozen = self.cycle_dir(ctx.cycle_id) / ANSWERS_PROMPTS
        if es.answers is None and es.answers_questions > 0 and frozen.exists():
            more["answers"] = frozen  # the answers suite on this cycle's prompts (evaluate froze them)
        prefs = self.cycle_dir(ctx.cycle_id) / "export" / "prefs"
        if (prefs / "snapshot.json").exists() and json.loads((prefs / "snapshot.json").read_text())["rows"]:
            more["prefs"] = prefs / "train.jsonl"  # the pairs this cycle's export held out of training
        return es.eval_config(
            ctx.config.eval_suite, threads=ctx.config.launcher.threads or es.threads, **more
        )

    def _freeze_answers(self, ctx: StepContext, out: Path, n: int) -> dict:
        """The answers suite's prompts, built once per cycle (a resumed cycle keeps its file, so both
        checkpoints answer the same prompts) with the live router's retriever when the platform runs."""
        from keel.cycle.answers_prompts import PromptsError, freeze_prompts

        router = self.runtime.router if self.runtime is not None else None
        # the FAQ where this cycle's gates read it (a profile's eval.data), not only the settings' own
        settings = self.settings.model_copy(update={"eval": self._eval_settings(ctx)})
        try:
            return freeze_prompts(settings, out, n, retriever=getattr(router, "retriever", None))
        except PromptsError as e:
            raise StepFailed(f"answers suite: {e}") from None

    def _policy(self, ctx: StepContext) -> Path | None:
        if ctx.config.policy:
            return repo_path(ctx.config.policy)
        return self.settings.eval.policy

    def evaluate(self, ctx: StepContext, candidate: dict, baseline: dict) -> Done:
        from keel.store.evals import EvalRecord, record

        cfg = self.eval_config(ctx)
        missing = [k for k in ("mmlu", "cmmlu", "general", "domain") if getattr(cfg, k) is None]
        if missing:
            raise StepFailed(
                f"no eval data for {', '.join(missing)} (set eval.data): the gate could not pass"
            )
        d = self.cycle_dir(ctx.cycle_id)
        answers = None
        n = self._eval_settings(ctx).answers_questions
        if n > 0 and cfg.answers is None:
            answers = self._freeze_answers(ctx, d / ANSWERS_PROMPTS, n)
            cfg = self.eval_config(ctx)  # now with the frozen prompts
        cfg_path = d / "eval.json"
        cfg_path.write_text(
            json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}, indent=2),
            encoding="utf-8",
        )
        out: dict[str, Any] = {"fingerprint": cfg.fingerprint(), "config": str(cfg_path)}
        if answers is not None:
            out["answers_prompts"] = answers
        for role, ck in (("baseline", baseline), ("candidate", candidate)):
            argv = build_command(
                ctx.config.launcher,
                "training.eval",
                ["run", ck["path"], "--config", str(cfg_path)],
                distributed=False,
            )
            with self.quiet():
                res = run_child(argv, ctx.config.launcher, d / f"eval-{role}.log", ctx.cancel_event)
            try:
                line = json.loads(res.last_line)
            except json.JSONDecodeError:
                raise StepFailed(f"eval of {ck['version']} printed no result (log: {res.log})") from None
            record(self.db, EvalRecord(kind="run", checkpoint=ck["path"], path=line["path"]))
            out[role] = {
                "version": ck["version"],
                "eval": line["path"],
                "complete": line["complete"],
                "summary": line["summary"],
                "seconds": round(res.seconds, 1),
            }
        return Done(out)

    def gate(self, ctx: StepContext, candidate: dict, evaluation: dict) -> Done:
        from keel.store.evals import EvalRecord, record
        from training.eval.compare import compare_checkpoints
        from training.eval.data import EvalDataError

        cfg = self.eval_config(ctx)
        try:  # the eval JSONs exist (same fingerprint): this only compares, decides and writes the report
            res = compare_checkpoints(
                Path(candidate["path"]), Path(ctx.cycle.serving["path"]), cfg, self._policy(ctx)
            )
        except EvalDataError as e:
            raise StepFailed(f"gate: {e}") from None
        dec = res.decision or {}
        record(self.db, EvalRecord(kind="gate", checkpoint=candidate["path"], path=str(res.decision_path)))
        gates = [
            {"gate": g["gate"], "passed": g["passed"], "reason": g["reason"], "delta": g.get("delta")}
            for g in dec.get("gates", [])
        ]
        return Done(
            {
                "passed": bool(dec.get("passed")),
                "reasons": dec.get("reasons", []),
                "gates": gates,
                "decision": str(res.decision_path),
                "report": str(res.report),
            },
            hash=hashlib.sha256(Path(res.decision_path).read_bytes()).hexdigest()[:16]
            if res.decision_path
            else None,
        )

    # ---- promote / reject ------------------------------------------------------------------------------
    def _await(self, coro):
        loop = self.runtime.loop if self.runtime is not None else None
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(coro, loop).result()
        return asyncio.run(coro)

    def promote(self, ctx: StepContext, candidate: dict, gate: dict) -> Done:
        current = registry.serving(self.db)
        if current and current[0] == candidate["version"]:  # swapped before a restart: not again
            return Done({"decision": "promoted", "version": candidate["version"], "already": True})
        out = self._await(
            self.promotions.promote(
                candidate["version"], by=f"cycle:{ctx.cycle_id}", reason=f"cycle {ctx.cycle_id}: gate passed"
            )
        )
        return Done({"decision": "promoted", "version": candidate["version"], **out.to_dict()})

    def canary(self, ctx: StepContext, candidate: dict, gate: dict) -> Done | Skip:
        """The candidate on a sticky share of live traffic until the canary decides (it promotes by itself
        through the promotion service, or stops and rejects the candidate); the promote step then only
        records what the canary did."""
        from keel.store import canaries

        svc = self.canary_service
        if svc is None or self.runtime is None or self.runtime.loop is None:
            return Skip("no running platform: a canary needs live traffic")
        cfg = ctx.config.canary
        # A canary that could not fill its window would end inconclusive after the whole window: judge by
        # the traffic of the last window whether its share would reach min_requests, and skip it otherwise
        # (a quiet nightly run; the watch after promotion still guards the promotion).
        recent = canaries.served_since(self.db, datetime.now(UTC) - timedelta(seconds=cfg.max_window_s))
        if recent * cfg.share < cfg.min_requests:
            return Skip(
                f"too little live traffic for a canary: {recent} requests in the last {cfg.max_window_s:g} s, "
                f"so a {cfg.share:.0%} share would not reach {cfg.min_requests} (cycle.canary.min_requests) "
                "in its window; the watch after promotion still guards",
                {"recent_requests": recent},
            )
        window = {k: getattr(cfg, k) for k in ("min_requests", "max_requests", "max_window_s")}
        row = self._await(
            svc.start(candidate["version"], cfg.share, by="cycle", cycle_id=ctx.cycle_id, window=window)
        )
        cid = row["canary_id"]
        while (row := canaries.get(self.db, cid)) is not None and row["status"] == "running":
            if ctx.cancelled:
                self._await(svc.stop(by="cycle", reason="the cycle was cancelled"))
                ctx.check_cancel()
            time.sleep(1.0)
        while not svc.done.is_set():  # a promotion the canary started finishes before the next step
            time.sleep(0.2)
        figures = row.get("figures") or {}
        return Done(
            {
                "decision": row["status"],
                "canary_id": cid,
                "reason": row.get("reason"),
                "n_candidate": figures.get("n_candidate"),
                "n_champion": figures.get("n_champion"),
            }
        )

    def reject(self, ctx: StepContext, candidate: dict, gate: dict) -> Done:
        passed = bool(gate.get("passed"))
        if not passed:
            registry.set_status(self.db, candidate["version"], "rejected")
        return Done(
            {
                "decision": "gated" if passed else "rejected",  # passed but cycle.promote is off
                "version": candidate["version"],
                "reasons": gate.get("reasons", []),
                "report": gate.get("report"),
            }
        )

    # ---- report ----------------------------------------------------------------------------------------
    def finish(self, ctx: StepContext, cycle: CycleRecord, steps: list[StepRecord]) -> str | None:
        from keel.cycle.report import write_report

        return str(write_report(self.cycle_dir(cycle.cycle_id) / "report.html", cycle, steps))
