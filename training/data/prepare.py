"""`keel data prepare`: stream sources → clean → PII scrub → dedup → held-out guard → snapshot.

CPT: domain text + general replay at ``ratio`` (domain:general, by characters), optional instruction
rows (MIP) rendered as chat text; held-out files (``heldout_patterns``) and ``general_eval`` become
eval/domain.jsonl and eval/general.jsonl. SFT/DPO: chat or preference rows, normalised.
Every training row is checked against all evaluation text; any overlap refuses the whole snapshot.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, TypeAdapter, ValidationError

from training.data import readers
from training.data.clean import (
    SITE_VARIABLES,
    clean_markdown,
    garbage_reason,
    normalise,
    split_long,
    strip_site_markup,
)
from training.data.dedup import NearDupIndex
from training.data.heldout import EvalGuard, is_heldout_path
from training.data.names import DEFAULT_MODEL, NameScrubber
from training.data.pii import Scrubber
from training.data.snapshot import (
    JsonlWriter,
    Snapshot,
    SnapshotError,
    iter_jsonl,
    write_parquet_copies,
    write_snapshot,
)


def _f(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class PrepareConfig:
    __pydantic_config__ = ConfigDict(extra="forbid")

    kind: Literal["cpt", "sft", "dpo", "kto"] = _f("cpt", "What the snapshot trains.")
    output: str = _f("", "Snapshot folder to create (immutable: must not exist).")
    sources: list[str] = _f([], "Training data: CPT text folders/JSONL (domain), or SFT/DPO/KTO JSONL files.")
    general: list[str] = _f([], "CPT replay text (general `train` split only).")
    instruction: list[str] = _f([], "CPT: chat JSONL mixed in as text (MIP).")
    eval_sets: list[str] = _f([], "Evaluation files/folders: training rows overlapping them are refused.")
    general_eval: list[str] = _f([], "General held-out text (the `valid` split): eval/general.jsonl.")
    doc_summaries: list[str] = _f(
        [], "SFT/DPO: Markdown doc folders whose front-matter summaries become chat rows."
    )
    heldout_patterns: list[str] = _f(
        ["*faq*"], "Source paths matching these are held out (eval/domain.jsonl)."
    )
    ratio: str = _f("7:3", "CPT domain:general mix by characters (seeds: 4:1 to 6:4).")
    min_chars: int = _f(30, "Drop texts shorter than this (after cleaning).")
    max_chars: int = _f(20000, "Split longer CPT documents at paragraphs into pieces of this size.")
    dedup_threshold: float = _f(0.9, "MinHash Jaccard threshold for near-duplicates.")
    overlap_threshold: float = _f(0.9, "MinHash threshold for train/eval overlap.")
    pii: bool = _f(True, "Scrub PII (emails, phones, ID/card numbers, secrets).")
    pii_names: bool = _f(
        False, "Also replace English person names (Presidio + spaCy NER; `pip install -e .[names]`)."
    )
    pii_names_model: str = _f(DEFAULT_MODEL, "Installed spaCy pipeline package the name detector uses.")
    site_markup: bool = _f(
        True,
        "Remove doc-site markup no answer should contain (Hugo shortcodes, site component tags, "
        "front-matter leftovers); code blocks are kept.",
    )
    site_variables: dict[str, str] = _f(
        SITE_VARIABLES, "Site template variables ({{{ .name }}}) → the text the site renders; others dropped."
    )
    parquet: bool = _f(False, "Also write each JSONL file as Parquet (JSONL stays canonical and hashed).")
    max_rows_per_source: int = _f(0, "Read at most N rows per source (0: all). For smoke runs.")
    seed: int = _f(0, "Shuffle/mix seed.")

    def ratio_parts(self) -> tuple[float, float]:
        d, _, g = self.ratio.partition(":")
        try:
            dv, gv = float(d), float(g or 0)
        except ValueError:
            raise SnapshotError(f"ratio {self.ratio!r} is not domain:general") from None
        if dv <= 0 or gv < 0:
            raise SnapshotError(f"ratio {self.ratio!r} must be positive")
        return dv, gv


def make_prepare_config(data: dict[str, Any]) -> PrepareConfig:
    try:
        return TypeAdapter(PrepareConfig).validate_python(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise SnapshotError(f"data recipe: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


class Pipeline:
    """Per-row cleaning state shared across sources (dedup index, scrubber, stats)."""

    def __init__(self, cfg: PrepareConfig):
        self.cfg = cfg
        names = [NameScrubber(cfg.pii_names_model).load()] if cfg.pii and cfg.pii_names else []
        self.scrubber = Scrubber(extra=names)
        self.dedup = NearDupIndex(cfg.dedup_threshold)
        self.guard = EvalGuard(cfg.overlap_threshold)
        self.stats: dict[str, Any] = {
            "dropped": Counter(),
            "read": 0,
            "kept": 0,
            "bytes_in": 0,
            "markup": Counter(),  # what cleaning removed or filled in (stats.json: markup_removed)
        }
        from tqdm.auto import tqdm

        # rows through the filters (a progress bar on a terminal; silent when piped)
        self.bar = tqdm(desc=f"prepare {cfg.kind}", unit=" rows", disable=None)

    def text(self, raw: str, markdown: bool = False) -> str:
        if markdown:
            raw = clean_markdown(raw, self.stats["markup"])
        return self.plain(raw)

    def plain(self, raw: str, count: bool = True) -> str:
        """Any text (a JSONL row, a message): site markup removed when configured, normalised."""
        if self.cfg.site_markup:
            raw, counts = strip_site_markup(raw, self.cfg.site_variables)
            if count:
                self.stats["markup"].update(counts)
        return normalise(raw)

    def keep(self, text: str, where: str, dedup_text: str | None = None) -> bool:
        """Length/garbage/dup filters; raises OverlapError on train/eval overlap."""
        self.bar.update()
        if len(text) < self.cfg.min_chars:
            self.stats["dropped"]["short"] += 1
            return False
        reason = garbage_reason(text)
        if reason:
            self.stats["dropped"][reason] += 1
            return False
        if self.dedup.add_if_new(dedup_text or text, where) is not None:
            self.stats["dropped"]["near_duplicate"] += 1
            return False
        return True

    def scrub(self, text: str) -> str:
        return self.scrubber.scrub(text) if self.cfg.pii else text


def _limit(it: Iterator, n: int) -> Iterator:
    for i, x in enumerate(it):
        if n and i >= n:
            return
        yield x


def _eval_texts(path: str) -> Iterator[tuple[str, str]]:
    """(text, where) for every string in an evaluation file or folder, whatever its format."""
    for p in readers.iter_files(path):
        if p.suffix.lower() == ".jsonl":
            for n, row in iter_jsonl(p):
                for t in readers.row_texts(row):
                    yield t, f"{p}:{n}"
        else:
            yield clean_markdown(p.read_text(encoding="utf-8", errors="replace")), f"{p}:1"


def render_chat(messages: list[dict[str, str]]) -> str:
    """MIP rows as plain ChatML text (the format the embedded model was tuned on)."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def _prepare_cpt(cfg: PrepareConfig, pipe: Pipeline, tmp: Path) -> dict[str, Any]:
    work = tmp / ".work"
    work.mkdir()
    # 1. evaluation text: held-out domain files, general valid split, named eval sets → guard (+ eval/)
    with JsonlWriter(tmp / "eval" / "domain.jsonl") as dom_eval:
        for src in cfg.sources:
            for p in readers.iter_files(src):
                if not is_heldout_path(p, cfg.heldout_patterns):
                    continue
                if p.suffix.lower() == ".jsonl":  # e.g. faq_qa.jsonl: any row format
                    for n, row in iter_jsonl(p):
                        texts = [pipe.plain(t) for t in readers.row_texts(row)]
                        for t in texts:
                            pipe.guard.add(t, f"{p}:{n}")
                        dom_eval.write({"text": "\n\n".join(texts)})
                else:
                    for rec in readers.iter_text(p):
                        text = pipe.text(rec.data["text"], rec.data.get("markdown", False))
                        pipe.guard.add(text, rec.where)
                        for piece in split_long(text, cfg.max_chars):
                            dom_eval.write({"text": piece})
    if cfg.general_eval:
        with JsonlWriter(tmp / "eval" / "general.jsonl") as gen_eval:
            for src in cfg.general_eval:
                for rec in readers.iter_text(src):
                    text = pipe.text(rec.data["text"])
                    pipe.guard.add(text, rec.where)
                    gen_eval.write({"text": text})
    for src in cfg.eval_sets:
        for text, where in _eval_texts(src):
            pipe.guard.add(pipe.plain(text, count=False), where)  # compared as training text is
    if not (tmp / "eval" / "domain.jsonl").stat().st_size:
        (tmp / "eval" / "domain.jsonl").unlink()

    # 2. domain text (streamed to a work file; counts characters for the mix)
    def stream(sources: list[str], heldout: bool, out: Path, budget: float = 0.0, sample: float = 1.0) -> int:
        chars = 0
        acc = 0.0  # systematic sampling: evenly spread over the source, close to the target
        with JsonlWriter(out) as w:
            for src in sources:
                for rec in _limit(readers.iter_text(src), cfg.max_rows_per_source):
                    if heldout and is_heldout_path(rec.path, cfg.heldout_patterns):
                        pipe.stats["dropped"]["heldout_path"] += 1
                        continue
                    pipe.stats["read"] += 1
                    pipe.stats["bytes_in"] += len(rec.data["text"].encode("utf-8"))
                    acc += sample
                    if acc < 1.0:
                        pipe.stats["dropped"]["not_sampled"] += 1
                        continue
                    acc -= 1.0
                    if budget and chars >= budget:
                        pipe.stats["dropped"]["over_ratio"] += 1
                        continue
                    text = pipe.scrub(pipe.text(rec.data["text"], rec.data.get("markdown", False)))
                    for i, piece in enumerate(split_long(text, cfg.max_chars)):
                        where = f"{rec.where}#{i}" if i else rec.where
                        if pipe.keep(piece, where):
                            pipe.guard.check(piece, where)
                            w.write({"text": piece})
                            chars += len(piece)
        return chars

    domain_chars = stream(cfg.sources, True, work / "domain.jsonl")
    if domain_chars == 0:
        raise SnapshotError(f"no domain text survived preparation of {', '.join(cfg.sources)}")
    d, g = cfg.ratio_parts()
    general_chars = 0
    if cfg.general and g > 0:
        target = domain_chars * g / d
        total = sum(
            len(rec.data["text"])
            for src in cfg.general
            for rec in _limit(readers.iter_text(src), cfg.max_rows_per_source)
        )
        # sample uniformly across the whole general file (it is in source order), then cap at the target
        general_chars = stream(
            cfg.general,
            False,
            work / "general.jsonl",
            budget=target,
            sample=min(1.0, 1.05 * target / max(total, 1)),
        )
    mip_rows = 0
    if cfg.instruction:
        with JsonlWriter(work / "instruction.jsonl") as w:
            for src in cfg.instruction:
                for rec in _limit(readers.iter_chat(src), cfg.max_rows_per_source):
                    pipe.stats["read"] += 1
                    msgs = [
                        {**m, "content": pipe.scrub(pipe.plain(m["content"]))} for m in rec.data["messages"]
                    ]
                    text = render_chat(msgs)
                    if pipe.keep(text, rec.where):
                        for m in msgs:
                            pipe.guard.check(m["content"], rec.where)
                        w.write({"text": text})
            mip_rows = w.rows
    # 3. interleave the parts at random, streaming (no part is held in memory)
    parts = [
        p for p in (work / "domain.jsonl", work / "general.jsonl", work / "instruction.jsonl") if p.exists()
    ]
    counts = {p.stem: sum(1 for _ in p.open(encoding="utf-8")) for p in parts}
    rng = random.Random(cfg.seed)
    files = {p.stem: p.open(encoding="utf-8") for p in parts}
    remaining = dict(counts)
    with (tmp / "train.jsonl").open("w", encoding="utf-8") as out:
        while any(remaining.values()):
            name = rng.choices(list(remaining), weights=list(remaining.values()))[0]
            out.write(files[name].readline())
            remaining[name] -= 1
    for f in files.values():
        f.close()
    for p in parts:
        p.unlink()
    work.rmdir()
    pipe.stats["kept"] = sum(counts.values())
    return {
        "rows": counts,
        "chars": {"domain": domain_chars, "general": general_chars},
        "ratio_requested": cfg.ratio,
        "ratio_achieved": f"{domain_chars / max(domain_chars + general_chars, 1):.2f}:{general_chars / max(domain_chars + general_chars, 1):.2f}",
        "instruction_rows": mip_rows,
    }


def _prepare_rows(cfg: PrepareConfig, pipe: Pipeline, tmp: Path) -> dict[str, Any]:
    for src in cfg.eval_sets:
        for text, where in _eval_texts(src):
            pipe.guard.add(pipe.plain(text, count=False), where)  # compared as training text is
    reader = {"sft": readers.iter_chat, "dpo": readers.iter_preference, "kto": readers.iter_unpaired}[
        cfg.kind
    ]
    records = [_limit(reader(src), cfg.max_rows_per_source) for src in cfg.sources]
    records += [_limit(_summary_rows(src, cfg), cfg.max_rows_per_source) for src in cfg.doc_summaries]
    with JsonlWriter(tmp / "train.jsonl") as w:
        for source in records:
            for rec in source:
                pipe.stats["read"] += 1
                row = _scrub_row(rec.data, pipe)
                if cfg.kind == "kto" and not rec.data["label"]:  # an undesirable answer keeps its markup
                    row["completion"] = _scrub_row(rec.data["completion"], pipe, markup=False)
                texts = readers.row_texts(row)
                pipe.stats["bytes_in"] += sum(len(t.encode("utf-8")) for t in texts)
                if not pipe.keep("\n".join(texts), rec.where):
                    continue
                for t in texts:
                    pipe.guard.check(t, rec.where)
                w.write(row)
        pipe.stats["kept"] = w.rows
    if pipe.stats["kept"] == 0:
        raise SnapshotError(f"no rows survived preparation of {', '.join(cfg.sources)}")
    return {"rows": {"train": pipe.stats["kept"]}}


def _summary_rows(src: str, cfg: PrepareConfig) -> Iterator[readers.Record]:
    """Front-matter summaries (held-out paths skipped). DPO: chosen = the page's own summary,
    rejected = another page's summary (a fluent but wrong answer); KTO: the same two, unpaired."""
    rows = (r for r in readers.iter_doc_summaries(src) if not is_heldout_path(r.path, cfg.heldout_patterns))
    if cfg.kind == "sft":
        for r in rows:
            yield readers.Record(r.where, r.path, {"messages": r.data["messages"]})
        return
    rng = random.Random(cfg.seed)
    previous: list[str] = []  # a bounded pool of other pages' summaries
    for r in rows:
        user, answer = r.data["messages"]
        if previous:
            wrong = [{**answer, "content": rng.choice(previous)}]
            if cfg.kind == "kto":  # unpaired: the page's summary is desirable, another page's is not
                yield readers.Record(
                    r.where, r.path, {"prompt": [user], "completion": [answer], "label": True}
                )
                yield readers.Record(r.where, r.path, {"prompt": [user], "completion": wrong, "label": False})
            else:
                yield readers.Record(
                    r.where, r.path, {"prompt": [user], "chosen": [answer], "rejected": wrong}
                )
        previous = (previous + [answer["content"]])[-256:]


def _scrub_row(v: Any, pipe: Pipeline, markup: bool = True) -> Any:
    """Normalised and scrubbed; site markup removed except from a rejected answer (the markup may be what
    makes it worse, so the preference keeps it)."""
    if isinstance(v, str):
        return pipe.scrub(pipe.plain(v) if markup else normalise(v))
    if isinstance(v, list):
        return [_scrub_row(x, pipe, markup) for x in v]
    if isinstance(v, dict):
        return {
            k: (x if k == "role" else _scrub_row(x, pipe, markup and k != "rejected")) for k, x in v.items()
        }
    return v


def prepare(cfg: PrepareConfig) -> Snapshot:
    """Build the snapshot at ``cfg.output`` (atomically); raises SnapshotError / OverlapError."""
    if not cfg.output:
        raise SnapshotError("output is empty")
    if not cfg.sources and not cfg.doc_summaries:
        raise SnapshotError("sources is empty")
    pipe = Pipeline(cfg)
    t0 = time.perf_counter()

    def fill(tmp: Path) -> dict[str, Any]:
        extra = _prepare_cpt(cfg, pipe, tmp) if cfg.kind == "cpt" else _prepare_rows(cfg, pipe, tmp)
        if cfg.parquet:
            write_parquet_copies(tmp)
        seconds = time.perf_counter() - t0
        return {
            "kind": cfg.kind,
            "read": pipe.stats["read"],
            "kept": pipe.stats["kept"],
            "dropped": dict(pipe.stats["dropped"]),
            "pii": dict(pipe.scrubber.counts),
            "markup_removed": dict(sorted(pipe.stats["markup"].items())),
            "eval_texts_guarded": len(pipe.guard),
            "bytes_in": pipe.stats["bytes_in"],
            "seconds": round(seconds, 2),
            "mb_per_s": round(pipe.stats["bytes_in"] / 1e6 / max(seconds, 1e-9), 3),
            "config": asdict(cfg),
            "config_hash": hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:16],
            **extra,
        }

    try:
        return write_snapshot(Path(cfg.output), cfg.kind, fill)
    finally:
        pipe.bar.close()
