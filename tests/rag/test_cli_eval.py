"""`keel eval rag` / `keel eval router` functions (keel.cli.eval_rag) on the small real index."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from keel.cli import CliState
from keel.cli.eval_rag import eval_rag, eval_router
from typer.testing import CliRunner

ROUTER_DATA = Path(__file__).resolve().parents[1] / "data" / "router_eval.jsonl"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("rag")(eval_rag)
    app.command("router")(eval_router)
    return app


def _settings(monkeypatch, index: Path) -> None:
    monkeypatch.setattr(CliState, "config_file", None, raising=False)
    monkeypatch.setattr(CliState, "overrides", [f"rag.index_dir={index}"], raising=False)
    # keel.cli.load() caches the settings on CliState: start from none and leave none behind
    monkeypatch.setattr(CliState, "_settings", None, raising=False)
    monkeypatch.delattr(CliState, "_settings")


def test_eval_rag_reports_recall_per_mode(small_index, tmp_path: Path, monkeypatch):
    _settings(monkeypatch, small_index[1])
    qa = tmp_path / "qa.jsonl"
    rows = [
        {"question": "误删的表怎么找回", "source": "sql-statements/sql-statement-flashback-table.md"},
        {"question": "How does TiDB garbage collection work?", "source": "garbage-collection-overview.md"},
    ]
    qa.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    res = CliRunner().invoke(_app(), ["rag", "--qa", str(qa), "--mode", "hybrid", "--mode", "lexical"])
    assert res.exit_code == 0, res.output
    hybrid = next(ln for ln in res.output.splitlines() if ln.startswith("hybrid"))
    assert hybrid.split()[1:] == ["2", "1.000", "1.000", "1.000", "1.000"]

    qa.write_text('{"question": "x"}\n', encoding="utf-8")
    res = CliRunner().invoke(_app(), ["rag", "--qa", str(qa)])
    assert res.exit_code == 1 and "qa.jsonl:1" in res.output


def test_eval_router_prints_confusion_matrix(small_index, monkeypatch):
    _settings(monkeypatch, small_index[1])
    res = CliRunner().invoke(_app(), ["router", "--data", str(ROUTER_DATA)])
    assert res.exit_code == 0, res.output
    assert "out_of_scope" in res.output and "overall accuracy" in res.output
    acc = float(res.output.split("overall accuracy")[1].split()[0])
    assert acc >= 0.9
