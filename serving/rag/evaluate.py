"""Retrieval metrics over question → source pairs: recall@k and MRR at the document level."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from keelcommon.jsonl import read_jsonl
from serving.rag.retriever import Retriever


@dataclass
class QAItem:
    question: str
    source: str  # path under the corpus root, e.g. "sql-statements/sql-statement-select.md"
    lang: str = ""


@dataclass
class RetrievalReport:
    n: int
    recall: dict[int, float]
    mrr: float
    ranks: list[int | None] = field(
        default_factory=list
    )  # document rank of the source (1-based), None: missed

    def row(self) -> dict:
        return {
            "n": self.n,
            **{f"recall@{k}": round(v, 3) for k, v in self.recall.items()},
            "mrr": round(self.mrr, 3),
        }


def load_qa(path: Path) -> list[QAItem]:
    """JSONL with `question` and `source` (the faq_qa.jsonl format); errors name the line."""
    return read_jsonl(
        path,
        lambda d: QAItem(str(d["question"]), str(d["source"]), str(d.get("lang", ""))),
        error=ValueError,
        expected="a JSON object with 'question' and 'source'",
        what="questions",
    )


def doc_rank(relpaths: list[str], source: str) -> int | None:
    """Rank of `source` among the distinct documents in hit order (chunks of one doc count once)."""
    seen: list[str] = []
    for p in relpaths:
        if p not in seen:
            seen.append(p)
            if p == source or p.endswith("/" + source):
                return len(seen)
    return None


def evaluate(retriever: Retriever, items: list[QAItem], mode: str = "hybrid", ks=(1, 5, 10), depth: int = 30):
    ranks = []
    for it in items:
        hits = retriever.search(it.question, k=depth, mode=mode)
        ranks.append(doc_rank([h.relpath for h in hits], it.source))
    n = len(items)
    recall = {k: sum(1 for r in ranks if r is not None and r <= k) / n for k in ks}
    mrr = sum(1 / r for r in ranks if r) / n
    return RetrievalReport(n, recall, mrr, ranks)
