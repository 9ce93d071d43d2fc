"""Until the dense index is complete a domain answer says retrieval was lexical only: the router's plan,
the gateway's `keel` block and the request-log row; once every chunk has a vector the flag is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from keel.store.db import Database
from keel.store.requestlog import insert_rows, select_requests

from serving.gateway.chat import RouteDecision
from serving.rag.config import RagConfig
from serving.rag.indexer import Indexer
from serving.records import RequestRecord
from serving.router.config import RouterConfig
from serving.router.hook import gateway_router
from serving.router.service import build_router

QUESTION = "TiDB 里被误删的表怎么用 FLASHBACK TABLE 恢复？"


def _decision(router) -> RouteDecision:
    return asyncio.run(gateway_router(router, deadline_s=120)([{"role": "user", "content": QUESTION}]))


def test_lexical_only_flag_until_the_dense_index_is_complete(small_index, tmp_path: Path):
    docs, _ = small_index
    index = tmp_path / "idx"
    Indexer(index).update([docs], dense=False, progress=False)  # BM25 at once, no vector yet
    router = build_router(RouterConfig(), RagConfig(), index)
    router.retriever._next_open = float("inf")  # the dense collection is looked for by refresh() below

    d = _decision(router)
    assert d.route == "domain" and d.sources, d.info
    assert d.info.lexical_only and d.keel(d.sources) == {
        "route": "domain",
        "sources": d.sources,
        "lexical_only": True,
    }
    db = Database(tmp_path / "keel.duckdb")
    rec = RequestRecord(request_id="r-lexical", route_info=d.info)
    insert_rows(db, [rec.model_dump()])

    # every chunk embedded: the flag is gone
    total = Indexer(index).embed_missing(batch=4, should_stop=lambda: False).chunks_total
    router.retriever.refresh()
    d = _decision(router)
    assert d.route == "domain" and not d.info.lexical_only and "lexical_only" not in d.keel(d.sources)
    assert router.retriever.dense_count() == total
    insert_rows(db, [RequestRecord(request_id="r-dense", route_info=d.info).model_dump()])

    rows = {
        r["request_id"]: r for r in select_requests(db, columns=["request_id", "lexical_only", "route_info"])
    }
    assert rows["r-lexical"]["lexical_only"] is True and rows["r-lexical"]["route_info"]["lexical_only"]
    assert rows["r-dense"]["lexical_only"] is False
    db.close()


def test_partial_dense_index_is_still_lexical_only(small_index, tmp_path: Path):
    docs, _ = small_index
    index = tmp_path / "idx"
    total = Indexer(index).update([docs], dense=False, progress=False).chunks_total
    Indexer(index).embed_missing(batch=4, should_stop=iter([False, False, True]).__next__)
    router = build_router(RouterConfig(), RagConfig(), index)
    router.retriever.refresh()
    assert 0 < router.retriever.dense_count() < total
    d = _decision(router)
    assert d.route == "domain" and d.info.lexical_only and d.keel(d.sources)["lexical_only"] is True
