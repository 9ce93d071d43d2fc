"""How often the optional name detector fires on the demo corpora (false positives mangle training text).

    OMP_NUM_THREADS=1 python bench/pii_names.py --docs 40 --general 200

Samples TiDB docs (Markdown, Chinese with English identifiers) and general English replay rows, runs
`training.data.names.NameScrubber` (Presidio + spaCy, guarded) and, for comparison, the same spaCy
PERSON recognizer unguarded. Prints replacements, what was replaced, and KB/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def run(texts: list[str], names) -> dict:
    engine = names._analyzer()
    t0 = time.perf_counter()
    guarded = sum(names(t)[1] for t in texts)
    guarded_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw: Counter = Counter()
    for t in texts:
        for r in engine.analyze(t, language="en", entities=["PERSON"]):
            raw[t[r.start : r.end]] += 1
    raw_s = time.perf_counter() - t0
    kb = sum(len(t.encode()) for t in texts) / 1e3
    return {
        "kb": round(kb, 1),
        "guarded_replacements": guarded,
        "guarded_kb_per_s": round(kb / guarded_s, 1),
        "unguarded_hits": sum(raw.values()),
        "unguarded_kb_per_s": round(kb / raw_s, 1),
        "unguarded_top": raw.most_common(15),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=40)
    ap.add_argument("--general", type=int, default=200)
    a = ap.parse_args()
    from training.data.names import NameScrubber

    names = NameScrubber().load()
    rng = random.Random(0)
    docs = sorted((DATA / "domain" / "tidb-docs-zh" / "docs").rglob("*.md"))
    domain = [p.read_text(encoding="utf-8") for p in rng.sample(docs, a.docs)]
    rows = [json.loads(x)["text"] for x in (DATA / "general" / "en" / "train.jsonl").open(encoding="utf-8")]
    general = rng.sample(rows, a.general)
    replaced = Counter()
    for t in domain + general:
        out, n = names(t)
        if n:
            # the replaced spans: words present before and gone after
            replaced.update(w for w in set(t.split()) - set(out.split()))
    res = {
        "loadavg_1m": os.getloadavg()[0],
        "domain": run(domain, names),
        "general_en": run(general, names),
        "replaced_words_top": replaced.most_common(30),
    }
    print(json.dumps(res, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
