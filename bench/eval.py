"""Eval speed and a peer check against lm-evaluation-harness, on the same model, items and machine.

    # our scorer vs lm-eval (hf backend) on the first N questions of a few subjects; per-item agreement
    python bench/eval.py peer --data ../shared/data --limit 40 --threads 2
    # seconds for the gate suite (bf16 body, transformers backend)
    python bench/eval.py suite --data ../shared/data --threads 2 --dtype bfloat16
    # keel sides vs lm-eval on the same items, interleaved, wall + process-tree CPU seconds, load average
    python bench/eval.py speed --limit 20 --rounds 1 \
        --sides lm_eval,keel:transformers:float32,keel:transformers:bfloat16,keel:vllm:bfloat16
    # the same on the gate suite's 1,240 questions (every subject; what `keel eval run` scores)
    python bench/eval.py speed --items gate --rounds 1 --sides keel:vllm:float32,lm_eval
    # perplexity of the gate suite's held-out texts, transformers vs vLLM (prompt log-probabilities)
    python bench/eval.py ppl --threads 2
    # full MMLU + CMMLU test sets, with a time budget (what got done is measured, not extrapolated)
    nice -n 10 python bench/eval.py full --threads 1 --dtype bfloat16 --budget-s 2400

lm-eval runs offline on the local CSVs through generated task YAMLs (`dataset_path: csv`, FACTS.md), with
the same prompts as its built-in mmlu/cmmlu tasks. Needs `pip install lm-eval==0.4.13` (leaves torch alone).
Results are printed as JSON and written to bench/results/eval-*.json; docs/BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MMLU_SUBJECTS = ["anatomy", "college_computer_science", "high_school_geography"]
CMMLU_SUBJECTS = ["agronomy", "chinese_history"]


def _base_model() -> Path:
    from keel.checkpoints.basemodel import ensure_base

    cache = Path(os.environ.get("KEEL_TEST_CACHE", Path.home() / ".cache" / "keel-test"))
    return ensure_base(cache / "checkpoints", None)


def _task_yaml(bench: str, subject: str, data: Path) -> str:
    """An lm-eval task equal to its built-in mmlu_<s>/cmmlu_<s>, reading the local CSV release."""
    from training.eval.data import MCBenchmark, MCSubject, _subject_meta
    from training.eval.prompts import description

    display, _ = _subject_meta(bench, subject, data / bench)
    if bench == "mmlu":
        files = {
            "test": data / "mmlu/test" / f"{subject}_test.csv",
            "dev": data / "mmlu/dev" / f"{subject}_dev.csv",
        }
        kwargs = {"column_names": ["question", "A", "B", "C", "D", "answer"], "keep_default_na": False}
        text = "{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\nAnswer:"
        target = "{{['A', 'B', 'C', 'D'].index(answer)}}"
    else:
        files = {"test": data / "cmmlu/test" / f"{subject}.csv", "dev": data / "cmmlu/dev" / f"{subject}.csv"}
        kwargs = {"keep_default_na": False}
        text = "{{Question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\n答案："
        target = "{{['A', 'B', 'C', 'D'].index(Answer)}}"

    desc = description(MCBenchmark(bench, str(data / bench), {}), MCSubject(subject, display, []))  # type: ignore[arg-type]
    doc = {
        "task": f"keel_{bench}_{subject}",
        "dataset_path": "csv",
        "dataset_kwargs": {"data_files": {k: str(v) for k, v in files.items()}, **kwargs},
        "test_split": "test",
        "fewshot_split": "dev",
        "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice",
        "description": desc,
        "doc_to_text": text,
        "doc_to_choice": ["A", "B", "C", "D"],
        "doc_to_target": target,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    return json.dumps(doc, ensure_ascii=False)  # JSON is valid YAML


def _run_tree(cmd: list[str], env: dict, stdout=None) -> tuple[float, float]:
    """Run cmd; (wall s, CPU s of the whole process tree). The tree is polled with psutil because vLLM's
    engine processes are grandchildren that getrusage(RUSAGE_CHILDREN) may never see reaped. Each process
    counts its own time only: a parent's children_* times repeat what its reaped children were already
    sampled at (counting them made a 265 s vLLM run read 1,420 CPU s on 2 cores)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout)
    seen: dict[int, float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    seen[p.pid] = t.user + t.system
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        time.sleep(0.25)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return wall, sum(seen.values())


def _subject_list(data: Path, items: str) -> list[tuple[str, str]]:
    """(bench, subject) pairs to score: the five peer subjects, or every subject in ``data``."""
    if items == "first":
        return [("mmlu", s) for s in MMLU_SUBJECTS] + [("cmmlu", s) for s in CMMLU_SUBJECTS]
    from training.eval.data import load_benchmark

    return [(b, s) for b in ("mmlu", "cmmlu") for s in load_benchmark(data / b, b).subjects]  # type: ignore[arg-type]


def _gate_data(data: Path, per_subject: int = 10, seed: int = 0) -> Path:
    """The gate suite's questions (the ones `keel eval run --suite gate` scores) as a data folder in the
    CSV releases' layouts, dev splits as they are: lm-eval and keel then read the very same items."""
    import csv

    from training.eval.data import LETTERS, gate_subset, load_benchmark

    root = Path(tempfile.mkdtemp(prefix="keel-gate-data-"))
    for bench in ("mmlu", "cmmlu"):
        src = data / bench
        (root / bench / "test").mkdir(parents=True)
        (root / bench / "dev").symlink_to(src / "dev", target_is_directory=True)
        if (src / "subjects.json").exists():
            (root / bench / "subjects.json").symlink_to(src / "subjects.json")
        gate = gate_subset(load_benchmark(src, bench), per_subject, seed)  # type: ignore[arg-type]
        for name, subj in gate.subjects.items():
            fname = f"{name}_test.csv" if bench == "mmlu" else f"{name}.csv"
            with open(root / bench / "test" / fname, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                if bench == "cmmlu":
                    w.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
                for i, it in enumerate(subj.test):
                    row = [it.question, *it.choices, LETTERS[it.answer]]
                    w.writerow([i, *row] if bench == "cmmlu" else row)
    return root


def run_lm_eval(
    model: Path, data: Path, limit: int | None, shots: int, threads: int, batch: int, items: str = "first"
) -> dict:
    tasks_dir = Path(tempfile.mkdtemp(prefix="keel-lmeval-tasks-"))
    out_dir = Path(tempfile.mkdtemp(prefix="keel-lmeval-out-"))
    names = []
    for bench, s in _subject_list(data, items):
        (tasks_dir / f"keel_{bench}_{s}.yaml").write_text(_task_yaml(bench, s, data), encoding="utf-8")
        names.append(f"keel_{bench}_{s}")
    cmd = [
        "lm_eval",
        "--model", "hf",
        "--model_args", f"pretrained={model},dtype=float32",
        "--device", "cpu",
        "--tasks", ",".join(names),
        "--include_path", str(tasks_dir),
        "--num_fewshot", str(shots),
        *(["--limit", str(limit)] if limit else []),
        "--batch_size", str(batch),
        "--log_samples",
        "--output_path", str(out_dir),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    wall, cpu = _run_tree(cmd, env)
    per_task = {}
    for f in out_dir.rglob("samples_*.jsonl"):
        task = f.name[len("samples_") :].rsplit("_", 1)[0]
        # split("\n"), not splitlines(): question texts hold U+2028 and the like, which JSON leaves raw.
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").split("\n") if line.strip()]
        rows.sort(key=lambda r: r["doc_id"])
        per_task[task] = [
            {"acc": float(r["acc"]), "logprobs": [float(x[0]) for x in r["filtered_resps"]]} for r in rows
        ]
    return {"wall_s": wall, "cpu_s": cpu, "tasks": per_task, "command": " ".join(cmd)}


def run_ours(
    model: Path,
    data: Path,
    limit: int | None,
    shots: int,
    threads: int,
    backend: str = "transformers",
    dtype: str = "float32",
    items: str = "first",
) -> dict:
    """Score the peer items in this process; timings split into start-up (model/engine load) and scoring."""
    import numpy as np
    import torch

    from training.eval.data import MCBenchmark, load_benchmark
    from training.eval.mc import MCScoreConfig, score_benchmark

    torch.set_num_threads(threads)
    t0, c0 = time.perf_counter(), time.process_time()
    sm, scorer = None, None
    if backend == "vllm":
        from training.eval.vllm_backend import VLLMScorer

        scorer = VLLMScorer(model, dtype=dtype)
    else:
        from training.eval.model import load_scoring_model

        sm = load_scoring_model(model, dtype=dtype)  # type: ignore[arg-type]
    t_loaded = time.perf_counter()
    per_task, n = {}, 0
    fulls = {b: load_benchmark(data / b, b) for b in ("mmlu", "cmmlu")}  # type: ignore[arg-type]
    for bench, s in _subject_list(data, items):
        full = fulls[bench]
        subj = full.subjects[s]
        subj.test = subj.test[:limit] if limit else subj.test  # lm-eval's --limit: the first N in file order
        recs = score_benchmark(
            sm, MCBenchmark(bench, full.source, {s: subj}), MCScoreConfig(shots=shots), scorer=scorer
        )
        per_task[f"keel_{bench}_{s}"] = [
            {"acc": float(r["correct"]), "logprobs": r["logprobs"]} for r in recs
        ]
        n += len(recs)
    t_end = time.perf_counter()
    if scorer is not None:
        scorer.close()
    return {
        "wall_s": t_end - t0,
        "start_s": t_loaded - t0,
        "score_s": t_end - t_loaded,
        "cpu_s": time.process_time() - c0,
        "questions": n,
        "tasks": per_task,
        "acc_mean": float(np.mean([r["acc"] for v in per_task.values() for r in v])),
    }


def peer(args) -> dict:
    import numpy as np

    model = _base_model()
    ours = run_ours(model, args.data, args.limit, args.shots, args.threads)
    theirs = run_lm_eval(model, args.data, args.limit, args.shots, args.threads, args.batch_size)
    rows, max_diff, agree, total = [], 0.0, 0, 0
    for task, mine in ours["tasks"].items():
        other = theirs["tasks"].get(task, [])
        if len(other) != len(mine):
            raise SystemExit(f"{task}: lm-eval scored {len(other)} items, ours {len(mine)}")
        a_m = float(np.mean([r["acc"] for r in mine]))
        a_t = float(np.mean([r["acc"] for r in other]))
        for x, y in zip(mine, other, strict=True):
            max_diff = max(max_diff, float(np.max(np.abs(np.array(x["logprobs"]) - np.array(y["logprobs"])))))
            agree += int(np.argmax(x["logprobs"]) == np.argmax(y["logprobs"]))
            total += 1
        rows.append({"task": task, "n": len(mine), "acc_keel": a_m, "acc_lm_eval": a_t})
    all_m = float(np.mean([r["acc"] for v in ours["tasks"].values() for r in v]))
    all_t = float(np.mean([r["acc"] for v in theirs["tasks"].values() for r in v]))
    return {
        "shots": args.shots,
        "limit_per_subject": args.limit,
        "threads": args.threads,
        "questions": total,
        "per_task": rows,
        "acc_keel": all_m,
        "acc_lm_eval": all_t,
        "acc_diff_points": 100 * (all_m - all_t),
        "same_prediction_share": agree / total,
        "max_abs_logprob_diff": max_diff,
        "keel_wall_s": ours["wall_s"],
        "keel_cpu_s": ours["cpu_s"],
        "lm_eval_wall_s": theirs["wall_s"],
        "lm_eval_cpu_s": theirs["cpu_s"],
        "speedup_wall": theirs["wall_s"] / ours["wall_s"],
        "speedup_cpu": theirs["cpu_s"] / ours["cpu_s"],
        "lm_eval_command": theirs["command"],
    }


def _accuracy_check(mine: dict, ref: dict) -> dict:
    """Accuracy of one side vs the reference side on the same items, and per-item agreement."""
    import numpy as np

    a = [r for t in sorted(ref) for r in mine[t]]
    b = [r for t in sorted(ref) for r in ref[t]]
    same = np.mean([np.argmax(x["logprobs"]) == np.argmax(y["logprobs"]) for x, y in zip(a, b, strict=True)])
    diff = max(
        float(np.max(np.abs(np.array(x["logprobs"]) - np.array(y["logprobs"]))))
        for x, y in zip(a, b, strict=True)
    )
    acc = float(np.mean([x["acc"] for x in a]))
    return {"acc": acc, "same_prediction_share": float(same), "max_abs_logprob_diff": diff}


def side(args) -> dict:
    """One keel side of `speed`, run in its own process so its start-up and CPU are counted like lm-eval's."""
    model = _base_model()
    r = run_ours(
        model, args.data, args.limit or None, args.shots, args.threads, args.backend, args.dtype, args.items
    )
    Path(args.out).write_text(json.dumps(r), encoding="utf-8")
    return {k: v for k, v in r.items() if k != "tasks"}


def speed(args) -> dict:
    """keel sides vs lm-eval on the same items, interleaved round by round (A, B, C, A, B, C ...).

    Every side is a fresh process: wall and CPU seconds (the process tree's, vLLM's engine included)
    cover start-up, model load and scoring, as lm-eval's do. Load average is recorded around each run.
    """
    import numpy as np

    model = _base_model()
    sides = args.sides.split(",")
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    tasks: dict[str, dict] = {}
    data, items, limit = args.data, args.items, args.limit or None
    if items == "gate":  # the gate suite's questions, every subject, as a data folder both sides read
        data, items, limit = _gate_data(args.data), "all", None
    for rnd in range(args.rounds):
        for name in sides:
            la0 = os.getloadavg()[0]
            if name == "lm_eval":
                r = run_lm_eval(model, data, limit, args.shots, args.threads, args.batch_size, items)
                tasks[name] = r.pop("tasks")
                r.pop("command")
            else:
                _, backend, dtype = name.split(":")
                out = Path(tempfile.mkstemp(prefix="keel-side-", suffix=".json")[1])
                cmd = [sys.executable, __file__, "side", "--backend", backend, "--dtype", dtype,
                       "--out", str(out), "--data", str(data), "--limit", str(limit or 0), "--items", items,
                       "--shots", str(args.shots), "--threads", str(args.threads)]  # fmt: skip
                env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                wall, cpu = _run_tree(cmd, env, stdout=subprocess.DEVNULL)
                inner = json.loads(out.read_text(encoding="utf-8"))
                out.unlink()
                tasks[name] = inner.pop("tasks")
                r = {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "start_s": inner["start_s"],
                    "score_s": inner["score_s"],
                }
            r["load_avg_1m"] = [round(la0, 2), round(os.getloadavg()[0], 2)]
            r["round"] = rnd
            runs[name].append(r)
            print(f"round {rnd} {name}: {json.dumps(r)}", file=sys.stderr, flush=True)
    ref = tasks["lm_eval"] if "lm_eval" in tasks else tasks[sides[0]]
    summary = {}
    for name in sides:
        wall = float(np.median([r["wall_s"] for r in runs[name]]))
        cpu = float(np.median([r["cpu_s"] for r in runs[name]]))
        summary[name] = {"median_wall_s": wall, "median_cpu_s": cpu, **_accuracy_check(tasks[name], ref)}
    if "lm_eval" in summary:
        lw, lc = summary["lm_eval"]["median_wall_s"], summary["lm_eval"]["median_cpu_s"]
        for v in summary.values():
            v["speedup_wall_vs_lm_eval"] = lw / v["median_wall_s"]
            v["speedup_cpu_vs_lm_eval"] = lc / v["median_cpu_s"]
            v["acc_diff_points_vs_lm_eval"] = 100 * (v["acc"] - summary["lm_eval"]["acc"])
    n = sum(len(v) for v in ref.values())
    return {"shots": args.shots, "items": args.items, "limit_per_subject": limit, "questions": n,
            "threads": args.threads,
            "rounds": args.rounds, "summary": summary, "runs": runs}  # fmt: skip


def full(args) -> dict:
    """Full MMLU then CMMLU test sets, subject by subject, with a progress bar; after every subject the
    seconds and questions so far go to bench/results/eval-full-progress.json, so a run stopped at a time
    budget (--budget-s) still leaves a measured part, not an extrapolation."""
    import torch
    from tqdm import tqdm

    from training.eval.data import MCBenchmark, load_benchmark
    from training.eval.mc import MCScoreConfig, score_benchmark, summarize

    torch.set_num_threads(args.threads)
    progress_path = REPO / "bench" / "results" / "eval-full-progress.json"
    progress_path.parent.mkdir(parents=True, exist_ok=True)
    # --resume: a run stopped at its budget left the first k subjects of each benchmark done (subjects go
    # in a fixed order); score the rest, into files of their own, so both parts stay on record.
    skip: dict[str, int] = {}
    previous = None
    if args.resume:
        if not progress_path.exists():
            sys.exit(f"error: --resume: no {progress_path} from an earlier run")
        previous = json.loads(progress_path.read_text(encoding="utf-8"))
        skip = {b: d["subjects"] for b, d in previous["done"].items()}
        progress_path = progress_path.with_name("eval-full-progress-resumed.json")
    t0, c0 = time.perf_counter(), time.process_time()
    benches = {b: load_benchmark(args.data / b, b) for b in ("mmlu", "cmmlu")}  # type: ignore[arg-type]
    total = sum(b.n_test() for b in benches.values())
    sm, scorer = None, None
    if args.backend == "vllm":
        from training.eval.vllm_backend import VLLMScorer

        scorer = VLLMScorer(_base_model(), dtype=args.dtype)
    else:
        from training.eval.model import load_scoring_model

        sm = load_scoring_model(_base_model(), dtype=args.dtype)
    state: dict = {"backend": args.backend, "dtype": args.dtype, "threads": args.threads, "shots": args.shots,
                   "questions_total": total, "start_s": time.perf_counter() - t0, "done": {},
                   "skipped_subjects": skip, "previous": previous}  # fmt: skip
    records: dict[str, list] = {b: [] for b in benches}
    with tqdm(total=total, desc="full MMLU+CMMLU", unit="q", mininterval=10) as bar:
        for name, bench in benches.items():
            if skip.get(name):
                bar.update(sum(len(s.test) for s in list(bench.subjects.values())[: skip[name]]))
            for k, (sname, subj) in enumerate(bench.subjects.items()):
                if k < skip.get(name, 0):
                    continue
                if time.perf_counter() - t0 > args.budget_s:
                    break
                one = MCBenchmark(bench.name, bench.source, {sname: subj})
                recs = score_benchmark(
                    sm, one, MCScoreConfig(shots=args.shots), progress=bar.update, scorer=scorer
                )
                records[name].extend(recs)
                state["done"][name] = {"subjects": state["done"].get(name, {}).get("subjects", 0) + 1,
                                       "questions": len(records[name])}  # fmt: skip
                state["questions_done"] = sum(len(v) for v in records.values())
                state["wall_s"] = time.perf_counter() - t0
                state["cpu_s"] = time.process_time() - c0
                state["load_avg_1m"] = os.getloadavg()[0]
                progress_path.write_text(json.dumps(state, indent=2), encoding="utf-8")
    if scorer is not None:
        scorer.close()
    already = sum(d["questions"] for d in (previous or {}).get("done", {}).values())
    state["complete"] = state.get("questions_done", 0) + already == total
    for name, recs in records.items():
        if recs:
            full_b = MCBenchmark(
                name, benches[name].source, {k: v for k, v in benches[name].subjects.items()}
            )  # type: ignore[arg-type]
            state[name] = summarize(full_b, recs)["overall"]
    return state


def suite(args) -> dict:
    """Gate suite end to end (model load included), plus a full-run estimate from the gate suite's rate."""
    import shutil

    import torch

    from training.eval.data import load_benchmark
    from training.eval.runner import EvalConfig, run_eval

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="keel-bench-eval-"))
    ckpt = work / "base"
    shutil.copytree(_base_model(), ckpt, ignore=shutil.ignore_patterns("eval"))
    d = args.data
    cfg = EvalConfig(
        suite="gate",
        shots=args.shots,
        mmlu=d / "mmlu",
        cmmlu=d / "cmmlu",
        general=d / "general",
        domain=d / "domain" / "tidb-docs-zh",
        threads=args.threads,
        dtype=args.dtype,
        backend=args.backend,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    out = run_eval(ckpt, cfg)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    r = out.result
    n_mc = r["mmlu"]["summary"]["overall"]["n"] + r["cmmlu"]["summary"]["overall"]["n"]
    mc_s = r["timings_s"]["mmlu"] + r["timings_s"]["cmmlu"]
    full_q = load_benchmark(d / "mmlu", "mmlu").n_test() + load_benchmark(d / "cmmlu", "cmmlu").n_test()
    shutil.rmtree(work, ignore_errors=True)
    return {
        "shots": args.shots,
        "threads": args.threads,
        "dtype": r["dtype"],
        "backend": r["backend"],
        "gate_suite_wall_s": wall,
        "gate_suite_cpu_s": cpu,
        "timings_s": r["timings_s"],
        "gate_mc_questions": n_mc,
        "mc_s_per_question": mc_s / n_mc,
        "full_mmlu_cmmlu_questions": full_q,
        "full_mmlu_cmmlu_estimate_s": full_q * mc_s / n_mc,
        "mmlu": r["mmlu"]["summary"]["overall"],
        "cmmlu": r["cmmlu"]["summary"]["overall"],
        "domain_ppl": r["domain"]["summary"]["ppl"],
        "general_ppl": r["general"]["summary"]["ppl"],
        "load_avg_1m_at_end": os.getloadavg()[0],
    }


def ppl(args) -> dict:
    """Perplexity of the gate suite's held-out texts (domain FAQ answers, 50 + 50 general texts) on both
    backends, one after the other in this process: seconds (start-up apart) and agreement per text."""
    import numpy as np
    import torch

    from training.eval import perplexity
    from training.eval.heldout import domain_heldout, general_heldout

    torch.set_num_threads(args.threads)
    model = _base_model()
    sets = {
        "domain": domain_heldout(args.data / "domain" / "tidb-docs-zh", include_docs=False),
        "general": general_heldout(args.data / "general", 50, 0),
    }
    texts = {k: [t.text for part in hs.parts.values() for t in part] for k, hs in sets.items()}
    out: dict = {"threads": args.threads, "dtype": "float32", "texts": {k: len(v) for k, v in texts.items()}}
    recs: dict[str, dict] = {}
    for backend in ("transformers", "vllm"):
        t0 = time.perf_counter()
        if backend == "vllm":
            from training.eval.vllm_backend import VLLMScorer

            sm, scorer = None, VLLMScorer(model, dtype="float32")
        else:
            from training.eval.model import load_scoring_model

            sm, scorer = load_scoring_model(model, dtype="float32"), None
        row: dict = {"start_s": time.perf_counter() - t0, "load_avg_1m": [round(os.getloadavg()[0], 2)]}
        recs[backend] = {}
        for name, tx in texts.items():
            t1 = time.perf_counter()
            r = perplexity.score_texts(sm, tx, scorer=scorer)
            row[f"{name}_s"] = time.perf_counter() - t1
            row[f"{name}_ppl"] = perplexity.summarize(r)["ppl"]
            row[f"{name}_tokens"] = perplexity.summarize(r)["tokens"]
            recs[backend][name] = r
        row["load_avg_1m"].append(round(os.getloadavg()[0], 2))
        if scorer is not None:
            scorer.close()
        out[backend] = row
        print(f"{backend}: {json.dumps(row)}", file=sys.stderr, flush=True)
    for name in texts:
        a = np.array([r["nll"] for r in recs["vllm"][name]])
        b = np.array([r["nll"] for r in recs["transformers"][name]])
        out[f"{name}_max_rel_nll_diff"] = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-9)))
        out[f"{name}_speedup"] = out["transformers"][f"{name}_s"] / out["vllm"][f"{name}_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["peer", "suite", "speed", "side", "full", "ppl"])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument(
        "--limit", type=int, default=40, help="peer, speed: first N questions per subject (0: all)"
    )
    p.add_argument(
        "--items",
        choices=["first", "gate", "all"],
        default="first",
        help="speed: five peer subjects (first --limit questions), the gate suite's questions of every "
        "subject, or every question in --data",
    )
    p.add_argument("--shots", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8, help="lm-eval --batch_size")
    p.add_argument(
        "--sides", default="lm_eval,keel:transformers:float32,keel:transformers:bfloat16,keel:vllm:float32"
    )
    p.add_argument("--rounds", type=int, default=2, help="speed: interleaved rounds")
    p.add_argument("--backend", default="transformers")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", default="")
    p.add_argument("--budget-s", type=float, default=float("inf"), help="full: stop after this many seconds")
    p.add_argument("--resume", action="store_true", help="full: score the subjects a stopped run left")
    args = p.parse_args()
    args.data = args.data.resolve()
    modes = {"peer": peer, "suite": suite, "speed": speed, "side": side, "full": full, "ppl": ppl}
    result = modes[args.mode](args)
    if args.mode == "side":
        return
    result["load_avg_1m_at_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    out = (
        Path(args.out) if args.out else REPO / "bench" / "results" / f"eval-{args.mode}-{args.shots}shot.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
