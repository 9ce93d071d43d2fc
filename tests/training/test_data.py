"""Data preparation: readers, cleaning, MinHash dedup, PII, held-out protection, snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import write_jsonl
from training.data import readers
from training.data.clean import clean_markdown, garbage_reason, normalise
from training.data.dedup import dedup
from training.data.heldout import EvalGuard, OverlapError, is_heldout_path
from training.data.pii import Scrubber
from training.data.prepare import make_prepare_config, prepare
from training.data.snapshot import SnapshotError, load_snapshot

DOC = (
    "TiDB 是一个分布式 SQL 数据库，支持水平扩展、强一致的分布式事务和 MySQL 协议兼容。它适合高可用场景。"
    "TiDB Server 负责解析 SQL 并生成执行计划，PD 保存集群元信息并调度数据，TiKV 以 Region 为单位存储数据。"
    "TiFlash 提供列式副本，用于加速分析型查询；数据通过 Raft Learner 异步复制，读取时保证一致性。"
    "部署时通常使用 TiUP 管理集群，可以在线扩容和缩容节点，并通过 Grafana 面板观察各组件的运行状态。"
)


def test_minhash_removes_planted_near_duplicate():
    base = "TiDB Lightning imports data into TiDB at high speed using the physical import mode. " * 3
    near = base.replace("high speed", "high  Speed") + "!"  # whitespace/case/punctuation drift
    other = "PD schedules regions and allocates timestamps for the whole cluster. " * 3
    assert dedup([base, other, near, base]) == [0, 1]


def test_pii_scrubber_on_planted_set():
    planted = {
        "email": "write to jane.doe@corp.cn today",
        "phone": "call +1 (415) 555-0132 or 13812345678.",
        "card_number": "card 4111 1111 1111 1111 on file",
        "id_number": "身份证 110101199003074514 已登记",
        "secret": "OPENAI sk-abcdefghijklmnopqrstuvwx1234 and api_key: 'Zx9Qw8Er7Ty6Ui5Op4As'",
    }
    s = Scrubber()
    out = {k: s.scrub(v) for k, v in planted.items()}
    assert s.counts == {"email": 1, "phone": 2, "card_number": 1, "id_number": 1, "secret": 2}
    assert "jane.doe" not in out["email"] and "4111" not in out["card_number"] and "sk-" not in out["secret"]
    # technical numbers that merely look like IDs stay (TSO timestamps, versions, ports, memory sizes)
    benign = "start-ts=434217889191428107 v7.5.0 port 4000 total=14388137984 uuid 0b4a6d50-3041-4664-9516-5525ee6d9f00"
    assert s.scrub(benign) == benign


def test_markdown_front_matter_and_garbage():
    md = "---\ntitle: TiUP FAQ\nsummary: x\n---\n\n<!-- hidden -->\nBody text here."
    assert normalise(clean_markdown(md)) == "# TiUP FAQ\n\nBody text here."
    assert garbage_reason("abc\ufffd\ufffd" * 10) == "encoding"
    assert garbage_reason("#### ---- |||| ==== " * 5) == "symbols"
    assert garbage_reason(DOC) is None


def test_chat_readers_normalise_all_formats(tmp_path):
    f = write_jsonl(
        tmp_path / "chat.jsonl",
        [
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
            {"instruction": "q", "input": "", "output": "a"},
        ],
    )
    rows = [r.data["messages"] for r in readers.iter_chat(f)]
    assert rows == [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]] * 3


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"messages": [{"role": "user", "content": "q"}]}', "no assistant turn"),
        ('{"foo": 1}', "unknown chat format"),
        ("{not json", "malformed JSON"),
    ],
)
def test_bad_chat_line_names_file_and_line(tmp_path, line, message):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"instruction": "q", "output": "a"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(SnapshotError, match=rf"bad.jsonl:2: .*{message}"):
        list(readers.iter_chat(f))


def test_heldout_paths_and_guard():
    assert is_heldout_path("docs/faq/monitor-faq.md") and not is_heldout_path("docs/overview.md")
    g = EvalGuard()
    # FAQ answers average ~320 characters; a one-character edit keeps Jaccard(5-grams) well above 0.9
    answer = (
        "支持。TiDB 支持二级索引、唯一索引和表达式索引，创建索引不阻塞读写，索引数据以键值对的形式存放在 TiKV 中，由优化器自动选择。"
        "添加索引时，TiDB 会在后台回填已有数据，可以通过 ADMIN SHOW DDL JOBS 查看进度；回填速度受 tidb_ddl_reorg_worker_cnt 控制。"
        "如果表很大，建议在业务低峰期执行，并确认 TiKV 磁盘空间充足。删除索引是在线操作，不影响正在运行的查询。"
    )
    g.add(answer, "faq_qa.jsonl:7")
    with pytest.raises(OverlapError, match="train.jsonl:3: .*faq_qa.jsonl:7"):  # exact
        g.check(answer, "train.jsonl:3")
    with pytest.raises(OverlapError, match="train.jsonl:5: .*faq_qa.jsonl:7"):  # near-duplicate
        g.check(answer.replace("由优化器", "并由优化器"), "train.jsonl:5")
    g.check("PD 负责调度 Region 并分配全局时间戳，与索引无关的另一段内容。", "train.jsonl:4")


ANSWER = (  # FAQ answers average ~320 characters
    "使用 tiup cluster scale-out 命令扩容集群的 TiKV 节点。先编写扩容拓扑文件，写明新节点的主机和端口，再执行命令，最后用 display 检查新节点的状态是否为 Up。"
    "扩容完成后，PD 会自动把 Region 调度到新节点上，调度速度可以通过 store limit 调整；在业务高峰期建议降低调度速度。"
    "如果扩容失败，可以查看 tiup 的日志定位原因，常见问题包括 SSH 互信未配置、端口被占用和目录权限不足。"
)


def _corpus(tmp_path: Path) -> dict[str, Path]:
    docs = tmp_path / "docs"
    (docs / "faq").mkdir(parents=True)
    (docs / "a.md").write_text(f"---\ntitle: A\n---\n\n# A\n\n{DOC} 联系 ops@pingcap.com。", encoding="utf-8")
    (docs / "b.md").write_text(
        f"# A\n\n{DOC}\n联系 ops@pingcap.com！", encoding="utf-8"
    )  # near-duplicate of a.md
    (docs / "c.md").write_text(
        "# C\n\nPD 负责调度 Region 并分配全局时间戳，是集群的大脑。" * 3, encoding="utf-8"
    )
    (docs / "faq" / "x-faq.md").write_text(
        "# FAQ\n\n## 如何扩容？\n\n使用 tiup cluster scale-out 命令扩容集群节点。", encoding="utf-8"
    )
    general = write_jsonl(
        tmp_path / "general.jsonl",
        [{"text": f"General text number {i} about rivers and mountains of the world."} for i in range(40)],
    )
    valid = write_jsonl(
        tmp_path / "valid.jsonl", [{"text": "Held-out general text about the history of printing presses."}]
    )
    return {"docs": docs, "general": general, "valid": valid}


def test_prepare_cpt_snapshot(tmp_path):
    c = _corpus(tmp_path)
    cfg = make_prepare_config(
        {
            "kind": "cpt",
            "output": str(tmp_path / "snap"),
            "sources": [str(c["docs"])],
            "general": [str(c["general"])],
            "general_eval": [str(c["valid"])],
            "ratio": "7:3",
        }
    )
    snap = prepare(cfg)
    stats = json.loads((snap.path / "stats.json").read_text())
    train = [json.loads(x)["text"] for x in snap.train.read_text().splitlines()]
    assert stats["dropped"]["near_duplicate"] == 1 and stats["dropped"]["heldout_path"] == 1
    assert stats["pii"] == {"email": 2} and not any("ops@pingcap.com" in t for t in train)
    assert not any("scale-out" in t for t in train)  # the FAQ file is held out...
    assert "scale-out" in (snap.path / "eval" / "domain.jsonl").read_text()  # ...and evaluated on
    assert "printing presses" in (snap.path / "eval" / "general.jsonl").read_text()
    assert not any(t.startswith("---") for t in train)
    d, g = stats["chars"]["domain"], stats["chars"]["general"]
    assert 0.2 <= g / (d + g) <= 0.4  # 7:3 by characters, within one document's granularity
    assert load_snapshot(snap.path).hash == snap.hash and len(snap.hash) == 64
    with pytest.raises(SnapshotError, match="already exists"):
        prepare(cfg)


def test_prepare_refuses_overlap_with_eval_and_writes_nothing(tmp_path):
    faq = write_jsonl(tmp_path / "faq_qa.jsonl", [{"question": "如何扩容？", "answer": ANSWER}])
    train = write_jsonl(
        tmp_path / "sft.jsonl",
        [
            {
                "messages": [
                    {"role": "user", "content": "PD 是什么？"},
                    {"role": "assistant", "content": "PD 是集群的调度中心，负责分配时间戳。"},
                ]
            },
            {
                "messages": [
                    {"role": "user", "content": "怎么扩容"},
                    {"role": "assistant", "content": ANSWER.replace("。", "！", 1)},
                ]
            },
        ],
    )
    cfg = make_prepare_config(
        {"kind": "sft", "output": str(tmp_path / "snap"), "sources": [str(train)], "eval_sets": [str(faq)]}
    )
    with pytest.raises(OverlapError, match=r"sft.jsonl:2: .*faq_qa.jsonl:1"):
        prepare(cfg)
    assert not (tmp_path / "snap").exists() and not list(tmp_path.glob(".snap*"))


def test_prepare_sft_and_dpo_rows(tmp_path):
    chat = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {
                "conversations": [
                    {"from": "human", "value": "我的邮箱是 a.b@example.org，TiDB 怎么备份？"},
                    {"from": "gpt", "value": "使用 BR 工具进行全量和增量备份。"},
                ]
            }
        ]
        * 2,
    )
    snap = prepare(
        make_prepare_config(
            {"kind": "sft", "output": str(tmp_path / "s"), "sources": [str(chat)], "min_chars": 5}
        )
    )
    rows = [json.loads(x) for x in snap.train.read_text().splitlines()]
    assert (
        len(rows) == 1
        and rows[0]["messages"][0]["role"] == "user"
        and "<EMAIL>" in rows[0]["messages"][0]["content"]
    )
    pref = write_jsonl(
        tmp_path / "p.jsonl",
        [{"prompt": "TiDB 是什么？", "chosen": "分布式 SQL 数据库。", "rejected": "一种水果。"}],
    )
    snap = prepare(
        make_prepare_config(
            {"kind": "dpo", "output": str(tmp_path / "d"), "sources": [str(pref)], "min_chars": 5}
        )
    )
    assert json.loads(snap.train.read_text())["chosen"] == "分布式 SQL 数据库。"
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(SnapshotError, match="no rows survived"):
        prepare(make_prepare_config({"kind": "dpo", "output": str(tmp_path / "e"), "sources": [str(empty)]}))
    assert not (tmp_path / "e").exists()


def test_parquet_copies_hold_the_same_rows(tmp_path):
    import pyarrow.parquet as pq

    from training.data.snapshot import write_parquet_copies

    rows_in = [
        {
            "messages": [
                {"role": "user", "content": f"TiDB question number {i}?"},
                {"role": "assistant", "content": f"Answer number {i}, with details."},
            ]
        }
        for i in range(5)
    ]
    src = write_jsonl(tmp_path / "c.jsonl", rows_in)
    cfg = {"kind": "sft", "sources": [str(src)], "min_chars": 5}
    plain = prepare(make_prepare_config({**cfg, "output": str(tmp_path / "a")}))
    both = prepare(make_prepare_config({**cfg, "output": str(tmp_path / "b"), "parquet": True}))
    rows = [json.loads(x) for x in both.train.read_text().splitlines()]
    assert pq.read_table(both.path / "train.parquet").to_pylist() == rows and len(rows) == 5
    assert both.hash == plain.hash  # JSONL is the canonical, hashed form
    assert "train.parquet" in json.loads((both.path / "snapshot.json").read_text())["files"]
    # streamed in batches: a batch size smaller than the file gives the same table
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "t.jsonl").write_text(both.train.read_text())
    write_parquet_copies(tmp_path / "x", batch_rows=2)
    assert pq.read_table(tmp_path / "x" / "t.parquet").to_pylist() == rows


def test_near_duplicate_index_returns_the_key_it_was_given():
    from training.data.dedup import NearDupIndex

    index = NearDupIndex(0.8)
    text = "The quick brown fox jumps over the lazy dog near the river bank today"
    assert index.add_if_new(text, "doc#a") is None
    assert index.find(text + "!") == "doc#a"  # near (not exact): found through the LSH entry "doc#a#0"
    assert index.add_if_new(text.upper(), "doc-b") == "doc#a"  # exact after normalising


SITE_PAGE = """---
title: 使用 TiUP 部署
summary: 用 TiUP 部署集群。
---

<!-- markdownlint-disable MD013 -->

# 使用 TiUP 部署

TiDB 是 {{{ .company }}} 公司设计的数据库，可部署在 {{{ .starter }}} 或自建环境 {{{ .unknown-url }}}。

{{< copyable "shell-regular" >}}

```shell
tiup cluster deploy tidb-test v8.5.0 ./topology.yaml --user root
echo '{{.Table}} <div>kept</div> {{< not-a-shortcode-inside-code >}}'
```

<SimpleTab groupId="language">
<div label="Python" value="python">

使用 Python 连接 TiDB，并在连接串中指定数据库名称。

</div>
</SimpleTab>

{{% notice "note" %}}
部署完成后，使用 tiup cluster display 检查每个节点的状态是否为 Up。
{{% /notice %}}
"""


def test_site_markup_is_removed_and_code_blocks_kept(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deploy.md").write_text(SITE_PAGE + "\n" + DOC, encoding="utf-8")
    snap = prepare(
        make_prepare_config({"kind": "cpt", "output": str(tmp_path / "snap"), "sources": [str(docs)]})
    )
    (text,) = [json.loads(x)["text"] for x in snap.train.read_text().splitlines()]
    for markup in (
        "{{< copyable",
        "{{%",
        "{{{",
        "<SimpleTab",
        "</div>\n</SimpleTab>",
        "markdownlint",
        "summary:",
    ):
        assert markup not in text.replace("<div>kept</div>", ""), markup
    # the code block is kept as written, shortcode look-alikes and Go templates included
    code = SITE_PAGE[SITE_PAGE.index("```shell") : SITE_PAGE.index("```\n\n<Simple") + 3]
    assert code in text
    assert "TiDB 是 PingCAP 公司设计的数据库，可部署在 TiDB Cloud Starter 或自建环境 。" in text
    assert "Python\n\n使用 Python 连接 TiDB" in text  # a tab's label stays with its text
    assert "部署完成后，使用 tiup cluster display 检查" in text
    stats = json.loads((snap.path / "stats.json").read_text())
    assert stats["markup_removed"] == {
        "front_matter": 1,
        "html_comment": 1,
        "shortcode": 3,
        "site_tag": 4,
        "site_variable": 2,
        "site_variable_dropped": 1,
    }


def test_site_markup_switch_and_preference_rows(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deploy.md").write_text(SITE_PAGE + "\n" + DOC, encoding="utf-8")
    off = {"kind": "cpt", "output": str(tmp_path / "off"), "sources": [str(docs)], "site_markup": False}
    snap = prepare(make_prepare_config(off))
    (text,) = [json.loads(x)["text"] for x in snap.train.read_text().splitlines()]
    assert '{{< copyable "shell-regular" >}}' in text and "{{{ .company }}}" in text
    # a preference row: the chosen answer is cleaned; the rejected one keeps the markup that makes it worse
    shortcode = '{{< copyable "sql" >}}\n'
    pref = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "prompt": "TiDB 是谁开发的？",
                "chosen": shortcode + "{{{ .company }}} 开发。",
                "rejected": shortcode + "不知道。",
            }
        ],
    )
    snap = prepare(
        make_prepare_config({"kind": "dpo", "output": str(tmp_path / "d"), "sources": [str(pref)]})
    )
    row = json.loads(snap.train.read_text())
    assert row["chosen"] == "PingCAP 开发。" and row["rejected"] == shortcode + "不知道。"


def test_prepare_kto_rows(tmp_path):
    shortcode = '{{< copyable "sql" >}}\n'
    rows = [
        {"prompt": "TiDB 是谁开发的？", "completion": shortcode + "{{{ .company }}} 开发。", "label": True},
        {"prompt": "TiDB 是谁开发的？", "completion": shortcode + "不知道，也许是别人。", "label": False},
    ]
    snap = prepare(
        make_prepare_config(
            {
                "kind": "kto",
                "output": str(tmp_path / "k"),
                "sources": [str(write_jsonl(tmp_path / "k.jsonl", rows))],
                "min_chars": 5,
            }
        )
    )
    got = [json.loads(x) for x in snap.train.read_text().splitlines()]
    assert got[0] == {"prompt": "TiDB 是谁开发的？", "completion": "PingCAP 开发。", "label": True}
    assert got[1]["completion"] == shortcode + "不知道，也许是别人。" and got[1]["label"] is False
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "x", "completion": "y", "label": "up"}])
    with pytest.raises(SnapshotError, match=r"bad.jsonl:1: label must be true"):
        prepare(make_prepare_config({"kind": "kto", "output": str(tmp_path / "b"), "sources": [str(bad)]}))
