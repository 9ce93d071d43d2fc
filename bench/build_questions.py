"""Build questions.jsonl, the traffic `keel simulate` sends (run from the repository root):

    python3 bench/build_questions.py ../shared/data/domain/tidb-docs-zh/docs

Chinese domain questions come from the docs' titles; their reference answers (used to build edits and
by the judge) from the page's front-matter summary or first paragraph. The FAQ pages are held out for
evaluation (the `keel eval` answers suite asks their questions), so no question or reference comes from
them. The English domain questions, small talk and out-of-scope questions are written here; the English
references paraphrase the page named in ``source``.

Every row has a ``split``. ``seen``: traffic that feeds training (`keel simulate` sends only these by
default). ``held_out``: sent only to measure (`--split held_out`), never before: every fourth domain
question of each language (other questions on other pages), and hand-written paraphrases of seen
questions (``paraphrase_of``; same reference and page), which tell learning the topic from learning
one wording.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "platform"))

from keelcommon.files import write_text_atomic  # noqa: E402

OUT = REPO / "platform" / "keel" / "simulate" / "questions.jsonl"
HOW = (
    "使用",
    "部署",
    "配置",
    "升级",
    "迁移",
    "备份",
    "恢复",
    "管理",
    "监控",
    "优化",
    "创建",
    "导入",
    "导出",
    "开启",
    "设置",
    "在",
    "通过",
    "连接",
    "用",
)

EN_DOMAIN = [
    (
        "How do I recover a table that was dropped by mistake in TiDB?",
        "sql-statements/sql-statement-flashback-table.md",
        "Use FLASHBACK TABLE: within the GC lifetime (tidb_gc_life_time, 10m0s by default) it restores a table "
        "removed by DROP or TRUNCATE, e.g. FLASHBACK TABLE t TO t_restored.",
    ),
    (
        "What is TiDB Lightning used for?",
        "tidb-lightning/tidb-lightning-overview.md",
        "TiDB Lightning imports large amounts of data (terabytes) into a TiDB cluster, for example to "
        "initialise a new cluster from CSV, SQL or Parquet files.",
    ),
    (
        "What does TiCDC do?",
        "ticdc/ticdc-overview.md",
        "TiCDC replicates incremental data changes from TiDB by pulling TiKV change logs, to another TiDB "
        "cluster for disaster recovery or to downstream systems such as MySQL or Kafka, with low latency.",
    ),
    (
        "What is TiFlash?",
        "tiflash/tiflash-overview.md",
        "TiFlash is TiDB's columnar storage engine for HTAP: it replicates data from TiKV asynchronously as a "
        "Raft Learner and keeps consistent reads, so analytical queries do not disturb transactions.",
    ),
    (
        "How does AUTO_RANDOM differ from AUTO_INCREMENT in TiDB?",
        "auto-random.md",
        "AUTO_RANDOM assigns random values to a BIGINT primary key so that writes spread over TiKV regions "
        "instead of creating a hotspot, which consecutive AUTO_INCREMENT values can cause.",
    ),
    (
        "How does garbage collection work in TiDB?",
        "garbage-collection-overview.md",
        "TiDB uses MVCC; GC removes old versions no longer needed. A GC leader triggers it periodically in three "
        "steps: Resolve Locks, Delete Ranges and Do GC.",
    ),
    (
        "How do I export data from TiDB with Dumpling?",
        "dumpling-overview.md",
        "Run dumpling with the connection options and an output directory, e.g. dumpling -u root -P 4000 "
        "-h 127.0.0.1 --filetype sql -o /tmp/test; it exports SQL or CSV files.",
    ),
    (
        "What is sync-diff-inspector?",
        "sync-diff-inspector/sync-diff-inspector-overview.md",
        "A tool that checks whether data in MySQL/TiDB sources and targets is consistent, compares table "
        "structure and data, and generates SQL to fix differences.",
    ),
    (
        "How do I deploy a TiDB cluster with TiUP?",
        "tiup/tiup-cluster.md",
        "Use the TiUP cluster component: write a topology file, run tiup cluster deploy <name> <version> "
        "topology.yaml, then tiup cluster start <name>; tiup cluster list shows the clusters.",
    ),
    (
        "What is a clustered index in TiDB?",
        "clustered-indexes.md",
        "With a clustered index the table's rows are stored ordered by the primary key, so lookups by primary "
        "key need one read instead of two; it is set with CLUSTERED / NONCLUSTERED on the primary key.",
    ),
    (
        "How can I see the execution plan of a query in TiDB?",
        "explain-overview.md",
        "Prefix the query with EXPLAIN to see the plan, or EXPLAIN ANALYZE to run it and see actual rows and "
        "time per operator.",
    ),
    (
        "What is TTL in TiDB?",
        "time-to-live.md",
        "Time to Live lets you set a lifetime per row: rows whose TTL has expired are deleted automatically in "
        "the background, configured with the TTL table option.",
    ),
    (
        "What is Stale Read?",
        "stale-read.md",
        "Stale Read reads historical versions of data as of a past time, for example with AS OF TIMESTAMP, "
        "which lowers read latency and lets followers serve reads.",
    ),
    (
        "How do I control resource usage per application in TiDB?",
        "tidb-resource-control-ru-groups.md",
        "Use Resource Control: create resource groups with a Request Unit (RU) quota and bind users or sessions "
        "to them, so each application's consumption is limited and scheduled.",
    ),
    (
        "What are Placement Rules in SQL?",
        "placement-rules-in-sql.md",
        "They let you decide with SQL where the replicas of tables and partitions are placed, for example per "
        "region or on particular storage, with CREATE PLACEMENT POLICY and ALTER TABLE ... PLACEMENT POLICY.",
    ),
    (
        "What does the TiDB architecture look like?",
        "tidb-architecture.md",
        "TiDB separates compute and storage: the stateless TiDB server handles SQL, PD manages metadata and "
        "scheduling, TiKV stores rows and TiFlash stores columns.",
    ),
]
# Paraphrases of seen questions (held out): the seen question's exact text → another way to ask it.
PARAPHRASES = {
    "_tidb_rowid 是什么？有什么用？": "TiDB 表里的隐藏列 _tidb_rowid 是做什么的？",
    "如何配置 TiDB Dashboard 使用 SSO 登录？": "TiDB Dashboard 能用单点登录吗？怎么设置？",
    "SHARD_ROW_ID_BITS 是什么？有什么用？": "表属性 SHARD_ROW_ID_BITS 起什么作用？",
    "WITH 是什么？有什么用？": "TiDB 里怎么用 WITH 写公共表表达式（CTE）？",
    "ADMIN RESUME DDL JOBS 是什么？有什么用？": "暂停中的 DDL 作业怎么恢复执行？",
    "TiDB Lightning 断点续传 是什么？有什么用？": "tidb-lightning 崩溃后重启，能接着之前的进度继续导入吗？",
    "如何使用资源管控 (Resource Control) 实现资源组限制和流控？": "怎样用资源组给 TiDB 上的不同业务限制资源配额？",
    "DROP DATABASE 是什么？有什么用？": "删除一个数据库用什么语句？会把哪些东西一起删掉？",
    "Stale Read 是什么？有什么用？": "Stale Read 读取历史版本的数据有什么好处？",
    "SHOW GRANTS 是什么？有什么用？": "怎么查看一个 TiDB 用户有哪些权限？",
    "CREATE RESOURCE GROUP 是什么？有什么用？": "在 TiDB 中创建资源组的 SQL 语句是什么？",
    "tiup status 是什么？有什么用？": "用哪个 tiup 命令查看组件的运行状态？",
    "How do I recover a table that was dropped by mistake in TiDB?": "I accidentally dropped a table in TiDB. Can I get it back?",
    "What is TiDB Lightning used for?": "When would I use TiDB Lightning?",
    "What does TiCDC do?": "How can I stream TiDB's data changes to Kafka or MySQL?",
    "How does garbage collection work in TiDB?": "What does TiDB's GC do with old row versions, and how is it run?",
    "What is a clustered index in TiDB?": "Why would I make the primary key of a TiDB table clustered?",
    "How can I see the execution plan of a query in TiDB?": "How do I get the query plan of a SQL statement in TiDB?",
}
HELD_OUT_EVERY = 4  # every 4th domain question of each language (the 4th, 8th, ...) is held out

SMALL_TALK = [
    ("zh", "你好！"),
    ("zh", "谢谢你的帮助！"),
    ("zh", "早上好，今天心情不错。"),
    ("zh", "你是谁？"),
    ("zh", "辛苦了，再见。"),
    ("zh", "哈哈，你真有意思。"),
    ("en", "Hi there!"),
    ("en", "Thanks a lot, that helped."),
    ("en", "Good morning, how are you?"),
    ("en", "Who are you?"),
    ("en", "Bye for now."),
    ("en", "Nice, you are fast."),
]
OUT_OF_SCOPE = [
    ("zh", "帮我写一首关于春天的诗"),
    ("zh", "明天北京天气怎么样？"),
    ("zh", "推荐几部好看的电影"),
    ("zh", "红烧肉怎么做？"),
    ("zh", "帮我翻译这句话成法语：我爱你"),
    ("en", "Write me a poem about the sea."),
    ("en", "What's the weather in Paris tomorrow?"),
    ("en", "Recommend a good science fiction novel."),
    ("en", "How do I bake sourdough bread?"),
    ("en", "Who won the football world cup in 2018?"),
]


def front_matter(text: str) -> tuple[dict[str, str], str]:
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---", 4)
    meta = {}
    for line in text[4:end].splitlines():
        if ":" in line and not line.startswith(" "):
            k, v = line.split(":", 1)
            meta[k.strip()] = v.strip()
    return meta, text[end + 4 :]


def first_paragraph(body: str) -> str:
    in_code = False
    for block in re.split(r"\n\s*\n", body):
        b = block.strip()
        if b.startswith("```"):
            in_code = not in_code if b.count("```") % 2 else in_code
            continue
        if in_code or not b or b[0] in "#>|-*<!" or b[:2].isdigit():
            continue
        if len(b) >= 40:
            return re.sub(r"\s+", " ", b)
    return ""


def reference(meta: dict[str, str], body: str) -> str:
    s = meta.get("summary", "")
    if len(s) >= 40 and not s.startswith(("了解", "介绍", "本文", "本篇")):
        return s
    return first_paragraph(body)


def main(docs: Path, n_zh: int = 48, seed: int = 0) -> None:
    rows = []
    pages = [
        p
        for p in sorted(docs.rglob("*.md"))
        if "faq" not in str(p).lower() and not p.name.startswith(("TOC", "_"))
    ]
    random.Random(seed).shuffle(pages)
    for p in pages:
        if sum(r["kind"] == "domain" and r["lang"] == "zh" for r in rows) >= n_zh:
            break
        meta, body = front_matter(p.read_text(encoding="utf-8"))
        title = meta.get("title", "").strip("'\"")
        ref = reference(meta, body)
        if (
            not title
            or len(title) > 40
            or re.search("发布|Release|版本历史", title)
            or not ref
            or not re.search(r"[\u4e00-\u9fff]", ref)
        ):
            continue
        q = f"如何{title}？" if title.startswith(HOW) else f"{title} 是什么？有什么用？"
        rows.append(
            {
                "kind": "domain",
                "lang": "zh",
                "question": q,
                "reference": ref[:600],
                "source": p.relative_to(docs).as_posix(),
            }
        )
    for q, src, ref in EN_DOMAIN:
        assert (docs / src).exists(), src
        rows.append({"kind": "domain", "lang": "en", "question": q, "reference": ref, "source": src})
    for lang in ("zh", "en"):
        domain = [r for r in rows if r["kind"] == "domain" and r["lang"] == lang]
        for n, r in enumerate(domain, 1):
            r["split"] = "held_out" if n % HELD_OUT_EVERY == 0 else "seen"
    seen = {r["question"]: r for r in rows if r.get("split") == "seen"}
    for q, para in PARAPHRASES.items():
        r = seen[q]  # a paraphrase of a held-out question would not test anything new
        rows.append({**r, "question": para, "split": "held_out", "paraphrase_of": q})
    rows += [{"kind": "chat", "lang": lang, "question": q, "split": "seen"} for lang, q in SMALL_TALK]
    rows += [
        {"kind": "out_of_scope", "lang": lang, "question": q, "split": "seen"} for lang, q in OUT_OF_SCOPE
    ]
    write_text_atomic(OUT, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    held = sum(r["split"] == "held_out" for r in rows)
    print(f"{OUT}: {len(rows)} questions ({held} held out)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
