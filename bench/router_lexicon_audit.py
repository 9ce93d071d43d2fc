"""Audit the router's product-name lexicon against its data: is each name grounded in the tuning data?

    python -P bench/router_lexicon_audit.py                      # the shipped lexicon
    python -P bench/router_lexicon_audit.py --lexicon OLD.yaml   # e.g. `git show REV:serving/router/data/lexicon.yaml`

For every name of serving/router/data/lexicon.yaml (domain and other lists) it reports, with the
lexicon's own matcher (serving/router/lexicon.py: whole ASCII words, `x_` prefixes, a joined word through
its 3+-letter parts, phrases and CJK names as substrings), how many texts it matches in the tuning side
(the intents file's examples + data/router_tune.jsonl) and in the test half (data/router_test.jsonl),
and lists the names that match test texts but no tuning/intent text: names that could only have come
from reading the test half. For those it also counts the files of TiDB's own documentation
(/work/shared/data/domain/tidb-docs-zh, known before the test half) that the name matches; a name is
kept on that ground only if it is in DOCS_GROUNDED below, i.e. judged one of TiDB's own component or
identifier names (the docs name MySQL, Kafka, … too: a docs hit alone grounds nothing).

The test half is read here only to audit names; nothing is tuned on it. Exit status 1 when a name
matches test texts only and is not in DOCS_GROUNDED (so the check can be rerun after an edit).
(-P: bench/serving.py would otherwise shadow the serving package.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from serving.router.evaluate import load_labelled
from serving.router.fit import TEST, TUNE
from serving.router.intents import load_intents
from serving.router.lexicon import _WORD, DEFAULT_LEXICON, Lexicon, _Matcher

DOCS = Path("/work/shared/data/domain/tidb-docs-zh")

# Test-only names kept because they are TiDB's own (a component, tool or identifier of TiDB) and its
# documentation, known before the test half, names them. Judged by hand; nothing else qualifies.
DOCS_GROUNDED: dict[str, str] = {
    "tikv-server": "the TiKV server binary",
    "tidb dashboard": "TiDB's built-in web console",
    "tidb cloud": "PingCAP's managed TiDB service",
    "shard_row_id_bits": "a TiDB table option",
}


def hits(name: str, texts: list[str]) -> list[str]:
    m = _Matcher([name])
    out = []
    for text in texts:
        t = text.lower()
        if m.count(t, _WORD.findall(t)):
            out.append(text)
    return out


def docs_files(names: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    if not DOCS.is_dir() or not names:
        return counts
    matchers = {n: _Matcher([n]) for n in names}
    for path in sorted(DOCS.rglob("*.md")):
        t = path.read_text(encoding="utf-8", errors="replace").lower()
        words = _WORD.findall(t)
        for n, m in matchers.items():
            if m.count(t, words):
                counts[n] += 1
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lexicon", type=Path, default=DEFAULT_LEXICON)
    ap.add_argument("--examples", type=int, default=1, help="test texts shown per test-only name")
    args = ap.parse_args()

    lex = Lexicon.model_validate(yaml.safe_load(args.lexicon.read_text(encoding="utf-8")))
    intents = [t for i in load_intents().intents.values() for t in i.examples]
    tune = [t for t, _ in load_labelled(TUNE)]
    test = [t for t, _ in load_labelled(TEST)]
    print(f"lexicon {args.lexicon}: {len(lex.domain)} domain + {len(lex.other)} other names")
    print(
        f"tuning side: {len(intents)} intents examples + {len(tune)} tuning messages; test half: {len(test)}"
    )
    print()
    print(f"{'list':7} {'name':22} {'intents':>7} {'tune':>5} {'test':>5}  grounded")
    test_only: list[tuple[str, str]] = []
    counts = {"tune/intents": 0, "test only": 0, "nowhere": 0}
    for side, names in (("domain", lex.domain), ("other", lex.other)):
        for name in names:
            n_int, n_tune, n_test = (len(hits(name, xs)) for xs in (intents, tune, test))
            if n_int or n_tune:
                why = "tune/intents"
            elif n_test:
                why = "test only"
                test_only.append((side, name))
            else:
                why = "nowhere"
            counts[why] += 1
            print(f"{side:7} {name:22} {n_int:7d} {n_tune:5d} {n_test:5d}  {why}")
    print()
    print(
        f"{counts['tune/intents']} names match tuning/intents texts, {counts['test only']} match test texts "
        f"only, {counts['nowhere']} match neither (written from the labelling rules' categories)"
    )
    docs = docs_files([n for _, n in test_only])
    print()
    print(f"names that match test-half texts but no tuning/intent text ({len(test_only)}):")
    failing = []
    for side, name in test_only:
        ex = hits(name, test)
        kept = name in DOCS_GROUNDED and docs[name] > 0
        verdict = f"KEEP (TiDB's own: {DOCS_GROUNDED[name]})" if kept else "remove"
        print(f"  {side:7} {name:22} test {len(ex):3d}  TiDB docs files {docs[name]:4d}  → {verdict}")
        for t in ex[: args.examples]:
            print(f"          e.g. {t[:90]!r}")
        if not kept:
            failing.append(name)
    if failing:
        print(f"\nto remove ({len(failing)}): {', '.join(failing)}")
    else:
        print("\nnone to remove: every test-only name is TiDB's own and named by its docs")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
