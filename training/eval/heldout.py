"""The held-out text sets: fixed, versioned definitions the training side must exclude.

Domain held-out = the FAQ answers of the domain corpus (``faq_qa.jsonl``) and the FAQ pages they were
extracted from (their ``source`` files). Its version is a hash of the content, so a changed corpus is a
new held-out set and old and new perplexities are never compared by accident.
General held-out = ``general/{en,zh}/valid.jsonl``.

Training imports :func:`domain_heldout_paths` / :func:`domain_heldout_texts` to keep these out of its
data (training and eval live in the same ``training`` package, so no boundary is crossed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from keelcommon.jsonl import iter_jsonl
from training.eval.data import EvalDataError

FAQ_FILE = "faq_qa.jsonl"


@dataclass
class HeldoutText:
    id: str
    text: str


@dataclass
class HeldoutSet:
    name: str
    version: str  # content hash of the definition
    parts: dict[str, list[HeldoutText]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _faq_rows(domain_dir: Path) -> list[dict]:
    faq = domain_dir / FAQ_FILE
    if not faq.exists():
        raise EvalDataError(f"{faq}: domain held-out FAQ file not found")
    rows = []
    for n, row in iter_jsonl(faq, EvalDataError):
        for key in ("id", "answer", "source"):
            if key not in row:
                raise EvalDataError(f"{faq}:{n}: missing field {key!r}")
        rows.append(row)
    if not rows:
        raise EvalDataError(f"{faq}: no FAQ entries")
    return rows


def faq_half(item_id: str) -> str:
    """``dev`` or ``test``: a fixed hash of a held-out item's id (``faq/12``) puts it in one half. Tuning
    (profiles, recipes, retrieval) reads the dev half; reported figures come from the test half. The
    gates keep using the whole set."""
    return "test" if hashlib.sha256(f"faq-half:{item_id}".encode()).digest()[0] & 1 else "dev"


def domain_heldout_paths(domain_dir: Path) -> list[Path]:
    """The corpus files that are held out: training must not read them (plus the FAQ file itself)."""
    domain_dir = Path(domain_dir)
    sources = sorted({r["source"] for r in _faq_rows(domain_dir)})
    return [domain_dir / FAQ_FILE, *(domain_dir / "docs" / s for s in sources)]


def domain_heldout(domain_dir: Path, include_docs: bool = True) -> HeldoutSet:
    domain_dir = Path(domain_dir)
    rows = _faq_rows(domain_dir)
    answers = [HeldoutText(f"faq/{r['id']}", r["answer"]) for r in rows if str(r["answer"]).strip()]
    paths = domain_heldout_paths(domain_dir)
    h = hashlib.sha256()
    docs = []
    for p in paths:
        if not p.exists():
            raise EvalDataError(f"{p}: held-out source file listed in {FAQ_FILE} is missing")
        data = p.read_bytes()
        h.update(f"{p.relative_to(domain_dir)}\0{_sha(data)}\n".encode())
        if p.name != FAQ_FILE:
            docs.append(HeldoutText(f"doc/{p.relative_to(domain_dir / 'docs')}", data.decode("utf-8")))
    parts = {"faq_answers": answers}
    if include_docs:
        parts["faq_docs"] = docs
    return HeldoutSet("domain", "d" + h.hexdigest()[:12], parts, paths)


def domain_heldout_texts(domain_dir: Path) -> list[str]:
    """Every held-out text (answers and pages), for content-level exclusion or decontamination checks."""
    s = domain_heldout(domain_dir)
    return [t.text for part in s.parts.values() for t in part]


def general_heldout(general_dir: Path, per_language: int | None = None, seed: int = 0) -> HeldoutSet:
    """``{en,zh}/valid.jsonl``; ``per_language`` picks a fixed hash-ranked subset (gate suite)."""
    general_dir = Path(general_dir)
    parts: dict[str, list[HeldoutText]] = {}
    h = hashlib.sha256()
    for lang in ("en", "zh"):
        f = general_dir / lang / "valid.jsonl"
        if not f.exists():
            continue
        data = f.read_bytes()
        h.update(f"{lang}\0{_sha(data)}\n".encode())
        texts = []
        for n, row in iter_jsonl(f, EvalDataError, text=data.decode("utf-8")):
            if "text" not in row:
                raise EvalDataError(f"{f}:{n}: expected a JSON object with a 'text' field")
            texts.append(HeldoutText(f"{lang}/{n}", row["text"]))
        if per_language is not None:
            texts = sorted(texts, key=lambda t: _sha(f"{seed}:{t.text}".encode()))[:per_language]
        parts[lang] = texts
    if not parts:
        raise EvalDataError(f"{general_dir}: no en/valid.jsonl or zh/valid.jsonl")
    return HeldoutSet("general", "g" + h.hexdigest()[:12], parts, [])
