"""Navigation pages (TOCs, index pages, link lists) never become sources; every source has a readable title."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.rag.config import RagConfig
from serving.rag.documents import discover, meaningful_title, read
from serving.rag.indexer import Indexer
from serving.rag.navigation import DOCUMENT_SHARE, is_navigation, link_share, navigation_ids
from serving.rag.retriever import Retriever

TOC = """- 关于
  - [垃圾回收简介](/gc.md)
  - [存储引擎](/storage.md)
- 部署
  - [集群部署](/deploy.md)
  - [扩容节点](/scale.md)
  - [垃圾回收配置](/gc-config.md)
<!-- comment -->
"""
REFERENCE = """可复制的语句：

- [`ALTER TABLE ... ADD COLUMN`](/add-column.md)：添加的列必须可以为空，或者带有默认值。
- [`ALTER TABLE ... MODIFY COLUMN`](/modify-column.md)：只能修改默认值和注释。
- [`CREATE INDEX`](/create-index.md)：索引在两边分别创建，数据不会重复写入。
"""


def test_structure_decides_not_the_name():
    assert is_navigation(TOC) and link_share(TOC) == (1.0, 5)
    assert not is_navigation(REFERENCE)  # links with what each one means are content
    prose = (
        "垃圾回收会清理旧版本数据，见 [GC](/gc.md) 与 [配置](/gc-config.md)。\n\n默认每 10 分钟运行一次。\n"
    )
    assert not is_navigation(prose)
    markup = '<LearningPath label="了解">\n\n[简介](https://x/overview)\n\n[功能](https://x/f)\n\n</LearningPath>\n'
    assert is_navigation(markup * 3)  # markup lines count neither way


def _corpus(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    # a table of contents under an ordinary name: only its structure gives it away
    (docs / "guide-map.md").write_text("---\ntitle: 文档地图\n---\n\n" + TOC * 3, encoding="utf-8")
    (docs / "gc.md").write_text(
        "---\ntitle: 垃圾回收简介\n---\n\n# 垃圾回收简介\n\n"
        "垃圾回收（GC）清理不再需要的旧版本数据，由 tidb_gc_life_time 控制保留时间，默认 10 分钟。\n",
        encoding="utf-8",
    )
    (docs / "storage.md").write_text(
        "# 存储引擎\n\n数据按 Region 切分保存在存储节点上，每个 Region 有三个副本。\n\n"
        "写入先进入 Raft 日志，多数副本确认后才算提交。\n\n"
        "Region 过大时会分裂，过小时会合并，调度器据此平衡各节点的负载。\n\n"
        "副本分布在不同的机器上，一台机器故障不会丢失数据。\n\n"
        "读取默认由 Leader 副本提供，也可以配置从 Follower 读取。\n\n"
        "存储节点的磁盘容量和写入速度决定了集群的上限。\n\n"
        "## 相关阅读\n\n" + "".join(f"- [存储第 {i} 篇](/s{i}.md)\n" for i in range(6)),
        encoding="utf-8",
    )
    return docs


def test_navigation_is_never_retrieved(tmp_path):
    docs = _corpus(tmp_path)
    index = tmp_path / "index"
    Indexer(index, RagConfig()).update([docs], dense=False, progress=False)
    on = Retriever(index, RagConfig())
    off = Retriever(index, RagConfig(skip_navigation=False))
    for q in ("垃圾回收配置", "集群部署和扩容节点", "存储引擎"):
        got = [h.relpath for h in on.search(q, 10, mode="lexical")]
        assert "guide-map.md" not in got, (q, got)
    # without the filter the map wins on its link texts: the test can fail
    assert off.search("集群部署和扩容节点", 1, mode="lexical")[0].relpath == "guide-map.md"
    storage = [h for h in on.search("存储第 3 篇", 10, mode="lexical") if h.relpath == "storage.md"]
    assert all("相关阅读" not in h.heading for h in storage)  # a link-list section of a content page
    assert any(h.relpath == "storage.md" for h in on.search("Region 副本", 5, mode="lexical"))


def test_the_demo_corpus_navigation_pages(shared_data):
    """The pages issue 15 saw cited for "What is TiDB?" are navigation by structure; content is not."""
    src = shared_data / "domain" / "tidb-docs-zh" / "docs"
    names = ["TOC.md", "TOC-api.md", "TOC-pingkai.md", "_index.md", "overview.md", "tidb-storage.md"]
    docs = {d.relpath: d for f in discover([src / n for n in names]) for d in read(f)}
    nav = {rel for rel, d in docs.items() if is_navigation(d.text, DOCUMENT_SHARE)}
    assert nav == {"TOC.md", "TOC-api.md", "TOC-pingkai.md", "_index.md"}


CARD = """<DevToolCard title="{name}" logo="x" docLink="/developer/{name}" githubLink="https://github.com/x/{name}">

使用 {name} 连接 TiDB。

</DevToolCard>
"""
LANDING = (
    "# 应用开发概览\n\nTiDB 是一款开源的分布式 SQL 数据库，同时支持在线事务处理与在线分析处理。\n\n"
    "本指南帮助应用开发者快速掌握如何连接 TiDB、设计数据库、读写数据。\n\n## 按语言分类\n\n"
    '<DevLangAccordion label="Java">\n'
    + "".join(CARD.format(name=n) for n in ("JDBC", "MyBatis", "Hibernate", "Spring", "GORM", "Django"))
    + "</DevLangAccordion>\n"
)
HEADINGS = "# 迁移\n\n" + "".join(
    f"## [{t}](/{t}.md)\n\n介绍{t}的用法与限制。\n\n"
    for t in ("导入", "导出", "同步", "校验", "回滚", "备份")
)


def test_landing_pages_of_cards_and_headings_with_links():
    """Index pages built of cards (a linking tag + a one-line blurb) or of headings that are links with
    a line each are navigation, judged as documents; a link followed by real paragraphs, and a word
    list beside a few anchors, are content."""
    assert is_navigation(LANDING, DOCUMENT_SHARE) and is_navigation(HEADINGS, DOCUMENT_SHARE)
    para = "这一节详细说明配置项的含义、默认值、取值范围，以及修改之后需要重启哪些组件、对性能有什么影响、在什么场景下建议调整。"
    assert len(para) > 40
    article = "".join(f"## [{t}](/{t}.md)\n\n{para * 2}\n\n{para}\n\n" for t in "ABCDEF")
    assert not is_navigation(article, DOCUMENT_SHARE)
    words = '<a id="A" href="#A">A</a>\n\n' + "".join(
        f"- {w}\n" for w in ("ACCOUNT", "ACTION", "ADD (R)", "AFTER")
    )
    assert not is_navigation(words * 6, DOCUMENT_SHARE)


def test_the_demo_corpus_landing_page_is_not_a_source(shared_data, tmp_path):
    """The page still cited for "TiDB 是谁开发的？" (develop/_index.md: language accordions of cards) is
    dropped by structure; content pages of the same questions still answer."""
    src = shared_data / "domain" / "tidb-docs-zh" / "docs"
    names = ["develop/_index.md", "_docHome.md", "overview.md", "tidb-architecture.md", "tidb-storage.md"]
    corpus = tmp_path / "docs"
    for n in names:
        (corpus / n).parent.mkdir(parents=True, exist_ok=True)
        (corpus / n).write_bytes((src / n).read_bytes())
    docs = {d.relpath: d for f in discover([corpus]) for d in read(f)}
    nav = {rel for rel, d in docs.items() if is_navigation(d.text, DOCUMENT_SHARE)}
    assert nav == {"develop/_index.md", "_docHome.md"}
    index = tmp_path / "index"
    Indexer(index, RagConfig()).update([corpus], dense=False, progress=False)
    on = Retriever(index, RagConfig())
    for q in ("TiDB 是谁开发的？", "Who develops TiDB?", "What is TiDB?"):
        got = {h.relpath for h in on.search(q, 5, mode="lexical")}
        assert got and not got & nav, (q, got)


def test_navigation_ids_whole_document_or_section():
    from serving.rag.chunking import chunk_document
    from serving.rag.documents import Document

    toc = Document("/d/map.md", "map.md", "markdown", TOC * 3, "Map")
    page = Document(
        "/d/p.md",
        "p.md",
        "markdown",
        "# P\n\n" + "正文很长的一段说明文字，讲清楚一件事。\n\n" * 8 + "## 另见\n\n" + TOC,
        "P",
    )
    chunks = chunk_document(toc) + chunk_document(page)
    ids = navigation_ids(chunks)
    assert all(c.id in ids for c in chunks if c.source == "/d/map.md")
    assert [c.heading for c in chunks if c.source == "/d/p.md" and c.id in ids] == ["P > 另见"]


@pytest.mark.parametrize(
    ("title", "relpath", "want"),
    [
        ("", "TOC.md", "TOC"),
        ("", "tidb-lightning/_index.md", "tidb lightning"),
        ("", "br/br-pitr-guide.md", "br / br pitr guide"),
        (
            "概览",
            "develop/dev-guide-optimize-sql-overview.md",
            "概览 (develop / dev guide optimize sql overview)",
        ),
        ("创建 {{{ .starter }}} 实例", "develop/x.md", "创建 starter 实例"),
        ("TiDB 简介", "overview.md", "TiDB 简介"),
    ],
)
def test_meaningful_titles(title, relpath, want):
    assert meaningful_title(title, relpath) == want


def test_title_from_the_first_heading_of_any_level(tmp_path):
    p = tmp_path / "no-title.md"
    p.write_text("Some intro line.\n\n## Configure the store limit\n\ntext\n", encoding="utf-8")
    [doc] = list(read(discover([p])[0]))
    assert doc.title == "Configure the store limit"
    q = tmp_path / "bare.txt"
    q.write_text("plain text", encoding="utf-8")
    assert next(read(discover([q])[0])).title == "bare"
