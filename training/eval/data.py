"""Readers for multiple-choice benchmarks in the layouts users actually have.

- MMLU original release: ``dev/<subject>_dev.csv``, ``test/<subject>_test.csv``, no header,
  columns ``question,A,B,C,D,answer`` with a letter answer.
- CMMLU release: ``dev/<subject>.csv``, ``test/<subject>.csv`` with a header ``,Question,A,B,C,D,Answer``.
- A Parquet/JSONL export with ``question``, ``choices`` (4 strings), ``answer`` (0-3 or a letter) and
  optionally ``subject`` columns: one file (test only), or a folder whose file names contain ``test``/``dev``.

Every problem is raised as :class:`EvalDataError` with the file named, so the CLI prints one line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from training.errors import TrainingError

LETTERS = ("A", "B", "C", "D")
PACKAGE_DIR = Path(__file__).parent
BenchName = Literal["mmlu", "cmmlu"]


class EvalDataError(TrainingError, ValueError):
    """A data problem worth one line to the user (the message names the file)."""


@dataclass(frozen=True)
class MCItem:
    id: str  # "<subject>/<content hash>": stable across file reorderings, so subsets stay identical
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int  # 0..3


@dataclass
class MCSubject:
    name: str
    display: str  # the subject as the lm-eval prompt names it ("abstract algebra", "农学")
    categories: list[str]
    test: list[MCItem] = field(default_factory=list)
    dev: list[MCItem] = field(default_factory=list)


@dataclass
class MCBenchmark:
    name: BenchName
    source: str
    subjects: dict[str, MCSubject]

    def n_test(self) -> int:
        return sum(len(s.test) for s in self.subjects.values())


def _content_id(subject: str, question: str, choices: tuple[str, ...], seen: set[str]) -> str:
    h = hashlib.sha1("\x1f".join((question, *choices)).encode("utf-8")).hexdigest()[:12]
    base = f"{subject}/{h}"
    item_id, k = base, 2
    while item_id in seen:  # the same question twice in one subject (MMLU has a few)
        item_id, k = f"{base}#{k}", k + 1
    seen.add(item_id)
    return item_id


def _answer_index(value: object, file: Path, row: int) -> int:
    text = str(value).strip()
    if text in LETTERS:
        return LETTERS.index(text)
    if text in {"0", "1", "2", "3"}:
        return int(text)
    raise EvalDataError(f"{file}: row {row}: answer {text!r} is not one of A-D")


def _items_from_rows(subject: str, rows: list[tuple], file: Path, seen: set[str]) -> list[MCItem]:
    """rows: (question, [4 choices], answer) tuples, in file order."""
    items = []
    for i, (question, choices, answer) in enumerate(rows, start=1):
        choices = tuple("" if c is None else str(c) for c in choices)
        if len(choices) != 4:
            raise EvalDataError(f"{file}: row {i}: expected 4 choices, got {len(choices)}")
        q = str(question)
        items.append(
            MCItem(
                _content_id(subject, q, choices, seen), subject, q, choices, _answer_index(answer, file, i)
            )
        )
    if not items:
        raise EvalDataError(f"{file}: no questions")
    return items


def _read_csv(file: Path, header: bool):
    import pandas as pd

    try:
        # keep_default_na=False: an option whose text is literally "None" or "NA" must stay text.
        df = pd.read_csv(
            file,
            header=0 if header else None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding="utf-8",
        )
    except pd.errors.EmptyDataError as e:
        raise EvalDataError(f"{file}: no questions") from e
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise EvalDataError(f"{file}: not a readable CSV: {str(e).splitlines()[0]}") from e
    return df


def read_mmlu_csv(file: Path, subject: str, seen: set[str]) -> list[MCItem]:
    df = _read_csv(file, header=False)
    if df.shape[1] != 6:
        raise EvalDataError(f"{file}: expected 6 columns (question,A,B,C,D,answer), found {df.shape[1]}")
    rows = [(r[0], r[1:5], r[5]) for r in df.itertuples(index=False, name=None)]
    return _items_from_rows(subject, rows, file, seen)


def read_header_csv(file: Path, subject: str, seen: set[str]) -> list[MCItem]:
    df = _read_csv(file, header=True)
    cols = {str(c).strip().lower(): c for c in df.columns}
    for need in ("question", "a", "b", "c", "d", "answer"):
        if need not in cols:
            raise EvalDataError(
                f"{file}: missing column {need.capitalize() if len(need) > 1 else need.upper()!r}"
            )
    rows = [
        (q, [a, b, c, d], ans)
        for q, a, b, c, d, ans in zip(
            *(df[cols[k]].tolist() for k in ("question", "a", "b", "c", "d", "answer")), strict=True
        )
    ]
    return _items_from_rows(subject, rows, file, seen)


def read_table(file: Path, default_subject: str) -> dict[str, list[tuple]]:
    """A Parquet/JSONL export → {subject: [(question, choices, answer), ...]}."""
    import pandas as pd

    try:
        if file.suffix == ".parquet":
            df = pd.read_parquet(file)
        else:
            df = pd.read_json(file, lines=True, dtype=False)
    except ValueError as e:
        raise EvalDataError(f"{file}: not readable: {str(e).splitlines()[0]}") from e
    for need in ("question", "choices", "answer"):
        if need not in df.columns:
            raise EvalDataError(f"{file}: missing column {need!r}")
    if df.empty:
        raise EvalDataError(f"{file}: no questions")
    subjects = df["subject"].astype(str) if "subject" in df.columns else [default_subject] * len(df)
    out: dict[str, list[tuple]] = {}
    for subj, q, ch, ans in zip(subjects, df["question"], df["choices"], df["answer"], strict=True):
        out.setdefault(subj, []).append((q, list(ch), ans))
    return out


def _subject_meta(bench: BenchName, subject: str, folder: Path) -> tuple[str, list[str]]:
    if bench == "mmlu":
        meta = json.loads((PACKAGE_DIR / "mmlu_categories.json").read_text(encoding="utf-8"))
        sub = meta["subcategories"].get(subject)
        cats = [c for c, subs in meta["categories"].items() if sub in subs]
        return subject.replace("_", " "), cats or ["other"]
    # CMMLU: a subjects.json beside the data wins (users may add subjects), else the packaged table.
    for f in (folder / "subjects.json", PACKAGE_DIR / "cmmlu_subjects.json"):
        if f.exists():
            info = json.loads(f.read_text(encoding="utf-8"))["subjects"].get(subject)
            if info:
                return info["name_zh"], list(info.get("categories", ["Other"]))
    return subject.replace("_", " "), ["Other"]


def _split_of(name: str) -> str | None:
    low = name.lower()
    if "test" in low:
        return "test"
    if "dev" in low or "val" in low:
        return "dev"
    return None


def load_benchmark(path: Path, bench: BenchName) -> MCBenchmark:
    """Read a benchmark from ``path`` in any of the supported layouts."""
    path = Path(path)
    if not path.exists():
        raise EvalDataError(f"{path}: benchmark data not found")
    subjects: dict[str, MCSubject] = {}
    seen: set[str] = set()
    folder = path if path.is_dir() else path.parent

    def subj(name: str) -> MCSubject:
        if name not in subjects:
            display, cats = _subject_meta(bench, name, folder)
            subjects[name] = MCSubject(name, display, cats)
        return subjects[name]

    if path.is_dir() and (path / "test").is_dir():
        test_files = sorted((path / "test").glob("*.csv"))
        if not test_files:
            raise EvalDataError(f"{path / 'test'}: no CSV files")
        for split in ("test", "dev"):
            for f in sorted((path / split).glob("*.csv")) if (path / split).is_dir() else []:
                if f.name.endswith(f"_{split}.csv"):  # MMLU original: no header
                    name = f.name[: -len(f"_{split}.csv")]
                    items = read_mmlu_csv(f, name, seen)
                else:  # CMMLU: header row
                    name = f.stem
                    items = read_header_csv(f, name, seen)
                getattr(subj(name), split).extend(items)
    else:
        files = [path] if path.is_file() else sorted([*path.glob("*.parquet"), *path.glob("*.jsonl")])
        if not files:
            raise EvalDataError(f"{path}: no CSV test/ folder and no .parquet/.jsonl files")
        for f in files:
            split = _split_of(f.name) or "test"
            for name, rows in read_table(f, path.stem if path.is_file() else f.stem).items():
                getattr(subj(name), split).extend(_items_from_rows(name, rows, f, seen))
    empty = [s.name for s in subjects.values() if not s.test]
    if empty:
        raise EvalDataError(f"{path}: subject(s) without test questions: {', '.join(empty)}")
    return MCBenchmark(bench, str(path), dict(sorted(subjects.items())))


def gate_subset(bench: MCBenchmark, per_subject: int, seed: int = 0) -> MCBenchmark:
    """A stratified subset: the same ``per_subject`` questions of every subject on every run.

    Items are ranked by a hash of (seed, item id), so the choice depends on content, not on file order
    or on the machine, and a candidate and the served model always meet identical items.
    """

    def rank(item: MCItem) -> str:
        return hashlib.sha256(f"{seed}:{item.id}".encode()).hexdigest()

    subjects = {
        name: MCSubject(s.name, s.display, s.categories, sorted(s.test, key=rank)[:per_subject], s.dev)
        for name, s in bench.subjects.items()
    }
    return MCBenchmark(bench.name, bench.source, subjects)
