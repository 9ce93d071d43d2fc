"""`keel eval run|gate|compare`: evaluate checkpoints and apply the promotion gate.

    keel eval run CHECKPOINT --suite gate --data ../shared/data          # <ckpt>/eval/gate-0shot.json
    keel eval gate CANDIDATE --data ../shared/data                       # vs the serving checkpoint: decision.json + report.html
    keel eval compare CANDIDATE --baseline base --data ../shared/data    # report only, no policy
    keel eval prompts --out answers.jsonl --data ../shared/data         # freeze the answers suite's prompts
    keel eval compare CAND -b BASE --suite answers --answers answers.jsonl   # answers alone, judged

CHECKPOINT/--baseline take a folder or a version name under <data_dir>/checkpoints. Data paths come from
the options, else from the settings' typed ``eval`` section (training/eval/config.py); `--set eval.dtype=float32`
or `--set eval.backend=vllm` change the scoring. Runs and gate decisions are recorded in the registry (through
the admin API while `keel up` runs, else in the database file).
Other eval commands (rag, router) live in this module too; each keeps its heavy imports inside.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import field, fields, make_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from keel.errors import KeelError

app = typer.Typer(no_args_is_help=True)


class Suite(StrEnum):
    gate = "gate"
    full = "full"
    answers = "answers"


SuiteOpt = Annotated[
    Suite,
    typer.Option(
        "--suite",
        help="gate: fixed stratified subset; full: everything; answers: only the answers suite (needs --answers).",
    ),
]
ShotsOpt = Annotated[int, typer.Option("--shots", help="0 or 5 (dev-split exemplars, as lm-eval).")]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", help="At most N questions per subject / texts per set (partial eval)."),
]
DataOpt = Annotated[Path | None, typer.Option("--data", help="Folder laid out like shared/data.")]
MmluOpt = Annotated[Path | None, typer.Option("--mmlu", help="MMLU data (CSV release, Parquet or JSONL).")]
CmmluOpt = Annotated[Path | None, typer.Option("--cmmlu", help="CMMLU data (CSV release, Parquet or JSONL).")]
GeneralOpt = Annotated[Path | None, typer.Option("--general", help="Folder with en/ zh/ valid.jsonl.")]
DomainOpt = Annotated[
    Path | None, typer.Option("--domain", help="Domain corpus folder (faq_qa.jsonl, docs/).")
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="torch threads.")]
AnswersOpt = Annotated[
    Path | None,
    typer.Option(
        "--answers",
        help="Frozen prompts (`keel eval prompts`): adds the answers suite (greedy answers judged by chrF).",
    ),
]
BaselineOpt = Annotated[
    str | None,
    typer.Option(
        "--baseline",
        "-b",
        help="Checkpoint to compare with (folder or version); default: the registry's serving one.",
    ),
]
CandidateArg = Annotated[str, typer.Argument(help="Candidate checkpoint folder or version.")]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="Gate policy YAML.")]
RerunOpt = Annotated[bool, typer.Option("--rerun", help="Re-score even when a matching eval JSON exists.")]


# The options every scoring command takes (what to score, where its data is): name → (typer type, default).
_OPTIONS: dict[str, tuple[Any, Any]] = {
    "suite": (SuiteOpt, Suite.gate),
    "shots": (ShotsOpt, 0),
    "limit": (LimitOpt, None),
    "data": (DataOpt, None),
    "mmlu": (MmluOpt, None),
    "cmmlu": (CmmluOpt, None),
    "general": (GeneralOpt, None),
    "domain": (DomainOpt, None),
    "threads": (ThreadsOpt, None),
    "answers": (AnswersOpt, None),
}
_OPTION_TYPES = {name: typ for name, (typ, _) in _OPTIONS.items()}
# A command receives them gathered in one frozen EvalOptions (attributes named as the options).
EvalOptions = make_dataclass(
    "EvalOptions", [(name, typ, field(default=d)) for name, (typ, d) in _OPTIONS.items()], frozen=True
)


def with_eval_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the EvalOptions as command-line options, in place of its ``options`` parameter, and
    call it with them gathered in one EvalOptions (typer reads the signature and annotations set here)."""
    hints = typing.get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    for p in inspect.signature(command).parameters.values():
        if p.name != "options":
            params.append(p.replace(annotation=hints[p.name]))
            continue
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params += [
            inspect.Parameter(f.name, kind, default=f.default, annotation=_OPTION_TYPES[f.name])
            for f in fields(EvalOptions)
        ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        options = EvalOptions(**{f.name: kwargs.pop(f.name) for f in fields(EvalOptions)})
        command(*args, options=options, **kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def _eval_config(o: EvalOptions):
    """The typed ``eval`` settings section with this command's options laid over it."""
    from keel.cli import load

    given = {"data": o.data, "mmlu": o.mmlu, "cmmlu": o.cmmlu, "general": o.general, "domain": o.domain}
    given["threads"] = o.threads
    given["answers"] = o.answers
    es = load().eval.model_copy(update={k: v for k, v in given.items() if v is not None})
    cfg = es.eval_config(o.suite.value, o.shots, o.limit)
    return cfg, es


def _checkpoint(ref: str) -> Path:
    """A folder, or a version resolved through the registry (its registered path, wherever it lives), or a
    name under checkpoints_dir; checked now, so a typo fails before minutes of scoring the other side."""
    from keel.cli import load

    p = Path(ref).expanduser()
    if not p.exists():
        registered = _Registry().path_of(ref)
        named = load().checkpoints_dir / ref
        if registered is not None:
            if not registered.is_dir():
                raise ValueError(f"{ref}: registered at {registered}, but that folder is not there")
            p = registered
        elif named.is_dir():
            p = named
        else:
            raise ValueError(
                f"{ref}: not a checkpoint folder nor a registered version (see `keel checkpoints list`)"
            )
    from training.checkpoint import load_manifest

    load_manifest(p)  # a folder without a complete manifest is not a checkpoint (one line, before scoring)
    return p


class _Registry:
    """The registry through the platform's admin API (running, or in-process over the database file)."""

    def path_of(self, version: str) -> Path | None:
        """Where the registry says `version` lives; None when it is not registered (or nothing is)."""
        from urllib.parse import quote

        from keel.cli import load
        from keel.cli.client import PlatformRefused, call, running_platform

        settings = load()
        if not running_platform(settings) and not settings.db_path.exists():
            return None
        try:
            row, _ = call(settings, "GET", f"/admin/checkpoints/{quote(version, safe='')}")
        except PlatformRefused as e:
            if e.status == 404:
                return None
            raise
        return Path(row["path"])

    def serving(self) -> tuple[str, Path] | None:
        from keel.cli import load
        from keel.cli.client import call, running_platform

        settings = load()
        if not running_platform(settings) and not settings.db_path.exists():
            return None  # nothing registered yet; don't create a database just to find that out
        rows, _ = call(settings, "GET", "/admin/checkpoints")
        hit = [r for r in rows if r["status"] == "serving"]
        return (hit[0]["version"], Path(hit[0]["path"])) if hit else None

    def record(self, kind: str, checkpoint: Path, path: Path) -> dict:
        from keel.cli import load
        from keel.cli.client import call

        body = {
            "kind": kind,
            "checkpoint": str(Path(checkpoint).resolve()),
            "path": str(Path(path).resolve()),
        }
        return call(load(), "POST", "/admin/evals", json=body)[0]


def _baseline(ref: str | None) -> Path:
    """``--baseline``, else the checkpoint the registry says is serving now (the issue's "served")."""
    if ref:
        return _checkpoint(ref)
    served = _Registry().serving()
    if served is None:
        raise ValueError("no serving checkpoint in the registry (run `keel up` once, or pass --baseline)")
    if not (served[1] / "config.json").is_file():
        raise ValueError(
            f"the serving version {served[0]} is registered at {served[1]}, which is not a model folder"
        )
    return served[1]


def _record(kind: str, checkpoint: Path, path: Path | None) -> None:
    """Record in the registry; a registry problem is reported, the files written stay valid."""
    if path is None:
        return
    try:
        row = _Registry().record(kind, checkpoint, path)
        typer.echo(f"recorded: {row['eval_id']}")
    except KeelError as e:  # the files written stay valid: a warning, not a failure
        msg = str(e).splitlines()[0]
        typer.echo(f"warning: not recorded in the registry: {msg}", err=True)


def _warn_missing(cfg) -> None:
    missing = [k for k in ("mmlu", "cmmlu", "general", "domain") if getattr(cfg, k) is None]
    if missing and cfg.suite != "answers":  # the answers suite needs only its prompts file
        typer.echo(
            f"note: no data for {', '.join(missing)}: the eval is partial and cannot pass a gate", err=True
        )


@app.command()
@with_eval_options
def run(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint folder or version name.")],
    options: EvalOptions,
) -> None:
    """Evaluate one checkpoint; writes <checkpoint>/eval/<suite>-<shots>shot.json and links it in the manifest."""
    from keel.cli import fail
    from keel.errors import user_errors

    try:
        cfg, _ = _eval_config(options)
        _warn_missing(cfg)
        from training.eval.runner import run_eval

        ckpt = _checkpoint(checkpoint)
        out = run_eval(ckpt, cfg)
    except (*user_errors(), ValueError) as e:
        raise fail(str(e)) from None
    r = out.result
    _record("run", ckpt, out.path)
    for name in ("mmlu", "cmmlu"):
        if name in r:
            o = r[name]["summary"]["overall"]
            typer.echo(f"{name}: acc {o['acc']:.4f}  score {o['score']:.4f}  ({o['n']} questions)")
    for name in ("domain", "general"):
        if name in r:
            s = r[name]["summary"]
            typer.echo(f"{name} ppl {s['ppl']:.3f}  bpb {s['bpb']:.4f}  ({s['tokens']} tokens)")
    if "answers" in r:
        s = r["answers"]["summary"]
        typer.echo(
            f"answers: judge score {s['score']:.4f}  ({s['n']} questions, {s['other_language']} in another "
            f"language, {s['empty']} empty)"
        )
        per_lang = s.get("by_language") or {}
        for lang, part in per_lang.items() if len(per_lang) > 1 else ():  # one language: the line above
            typer.echo(
                f"  {lang}: {part['score']:.4f}  ({part['n']} questions, {part['other_language']} in another language)"
            )
    typer.echo(f"eval: {out.path}{'' if r['complete'] else '  (partial)'}")


def _compare(
    candidate: str, baseline: str | None, o: EvalOptions, policy: Path | None, rerun: bool, gate: bool
):
    from keel.cli import fail
    from keel.errors import user_errors
    from training.eval.runner import eval_path

    try:
        cfg, es = _eval_config(o)
        _warn_missing(cfg)
        cand = _checkpoint(candidate)
        base = _baseline(baseline)
        from training.eval.compare import compare_checkpoints
        from training.eval.gates import load_policy

        pol = load_policy(policy or es.policy)  # a bad policy file fails here, not after the scoring

        out = compare_checkpoints(cand, base, cfg, pol, apply_policy=gate, rerun=rerun)
    except (*user_errors(), ValueError) as e:
        raise fail(str(e)) from None
    for ckpt in (base, cand):  # both eval JSONs (reused or fresh), then the decision
        _record("run", ckpt, eval_path(ckpt, cfg))
    _record("gate" if gate else "comparison", cand, out.decision_path if gate else out.report)
    return out


@app.command()
@with_eval_options
def gate(
    candidate: CandidateArg,
    options: EvalOptions,
    baseline: BaselineOpt = None,
    policy: PolicyOpt = None,
    rerun: RerunOpt = False,
) -> None:
    """Candidate vs served on identical items: pass/fail per gate, decision JSON and HTML report. Exit 1 on fail."""
    out = _compare(candidate, baseline, options, policy, rerun, gate=True)
    for g in out.decision["gates"]:
        typer.echo(f"{'pass' if g['passed'] else 'FAIL'}  {g['gate']:<14} {g['reason']}")
    typer.echo(f"report: {out.report}")
    typer.echo(f"decision: {out.decision_path}")
    if not out.decision["passed"]:
        typer.echo("gate: FAIL — " + "; ".join(out.decision["reasons"][:3]), err=True)
        raise typer.Exit(1)
    typer.echo("gate: PASS")


@app.command()
@with_eval_options
def compare(
    candidate: CandidateArg, options: EvalOptions, baseline: BaselineOpt = None, rerun: RerunOpt = False
) -> None:
    """Deltas with 95% CIs and the HTML report, without applying a policy."""
    out = _compare(candidate, baseline, options, None, rerun, gate=False)
    for m, d in out.deltas.items():
        if "error" in d:
            continue
        typer.echo(
            f"{m:<12} {d['baseline']:9.3f} → {d['candidate']:9.3f}  Δ {d['delta']:+.2f} {d['unit']}  "
            f"CI {d['ci'][0]:+.2f}..{d['ci'][1]:+.2f}{'  *' if d['significant'] else ''}"
        )
    typer.echo(f"report: {out.report}")


@app.command()
def prompts(
    out: Annotated[Path, typer.Option("--out", help="Where to write the prompts (JSONL).")],
    n: Annotated[int, typer.Option("--n", help="Held-out FAQ questions (fixed, hash-ranked).")] = 32,
    n_en: Annotated[
        int | None,
        typer.Option(
            "--n-en",
            help="English domain questions of the platform's own set (default: eval.answers_en_questions).",
        ),
    ] = None,
    data: DataOpt = None,
    domain: DomainOpt = None,
) -> None:
    """Freeze the answers suite's prompts: per held-out FAQ question, the engine messages serving builds
    (domain template + chunks retrieved from this data dir's index). Both checkpoints answer these."""
    from keel.cli import fail, load
    from keel.errors import user_errors

    if n < 1:
        raise fail("--n must be at least 1")
    if n_en is not None and n_en < 0:
        raise fail("--n-en must not be negative")
    settings = load()
    given = {k: v for k, v in {"data": data, "domain": domain}.items() if v is not None}
    settings = settings.model_copy(update={"eval": settings.eval.model_copy(update=given)})
    try:
        from keel.cycle.answers_prompts import freeze_prompts

        res = freeze_prompts(settings, out, n, n_en=n_en)
    except (*user_errors(), ValueError) as e:
        raise fail(str(e)) from None
    typer.echo(
        f"{res['n']} prompts ({res['n_en']} English, {res['fallback']} without documents) → {res['path']}  "
        f"sha256 {res['sha256'][:16]}"
    )


def _attach_retrieval_evals() -> None:
    # `keel eval rag` and `keel eval router` live in eval_rag.py (light imports at module level).
    from keel.cli.eval_rag import eval_rag, eval_router

    app.command("rag")(eval_rag)
    app.command("router")(eval_router)


_attach_retrieval_evals()
