"""The judge's scale, on texts written by people (never model answers): what the user model's anchors are.

    python -P bench/judge_anchors.py      # -P: bench/training.py must not shadow the training package

Scores with training/eval/judge.py (chrF on characters, language check): for every domain question of the
simulation bank, another question's reference in the same language (an answer on the wrong topic, same
docs), and the first sentence of its own reference (a short answer that is right); a few hand-written
answers to one FAQ-style question; and the user model's P(satisfied), P(thumbs down), P(edit) at each.
"""

from __future__ import annotations

import re
import statistics

from keel.simulate.traffic import load_questions
from keel.simulate.users import UserModel

from training.eval.judge import judge

REF = "TiDB 支持二级索引。可以使用 CREATE INDEX 语句在表上创建二级索引，查询时优化器会自动选择合适的索引。"
HAND = [
    ("off topic, same language", "TiDB 是一个分布式数据库。"),
    ("short, right", "是的，TiDB 支持二级索引。"),
    ("fuller, right", "TiDB 支持二级索引，可以用 CREATE INDEX 创建。"),
    ("right, in English", "Yes, TiDB supports secondary indexes: use CREATE INDEX."),
    ("doc-site markup", '{{< copyable "shell" >}}\n\n```shell\ntiup cluster display\n```'),
]


def main() -> None:
    j, um = judge(), UserModel()
    qs = [
        q for q in load_questions(None, "all") if q.kind == "domain" and q.reference and not q.paraphrase_of
    ]
    other = [
        j.score(a.reference, b.reference, lang=b.lang).score
        for a, b in zip(qs, qs[1:] + qs[:1], strict=True)
        if a.lang == b.lang
    ]
    first = [j.score(re.split(r"[。.]", q.reference)[0], q.reference, lang=q.lang).score for q in qs]

    def row(name: str, s: float) -> None:
        print(
            f"{name:<42} score {s:.3f}  P(satisfied) {um.p_satisfied(s):.2f}  "
            f"P(down) {um.p_thumbs_down(s):.2f}  P(edit) {um.p_edit(s):.2f}"
        )

    print(f"judge: {j.signature}")
    row(f"another question's reference (mean of {len(other)})", statistics.fmean(other))
    row(f"first sentence of its reference (mean of {len(first)})", statistics.fmean(first))
    for name, text in HAND:
        row(name, j.score(text, REF, lang="zh").score)


if __name__ == "__main__":
    main()
