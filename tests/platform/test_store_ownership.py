"""keel.store owns every SQL statement (issue 25): the import-linter contract keeps `duckdb` imports there;
this keeps SQL text there, since a module handed a connection could still run SQL without importing duckdb."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [ROOT / "platform" / "keel", ROOT / "serving", ROOT / "training", ROOT / "flywheel"]
STORE = ROOT / "platform" / "keel" / "store"
SQL = re.compile(
    r"^\s*(SELECT\b.+\bFROM\b|INSERT\s+(OR\s+\w+\s+)?INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|"
    r"CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+)?(TABLE|VIEW)\b)",
    re.DOTALL,
)


def sql_literals(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            out.append((node.lineno, node.value.strip().splitlines()[0][:80]))
    return out


def test_the_scan_finds_sql(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        'db.execute("SELECT a FROM requests WHERE x = ?")\nprint("Select one option from the list")\n'
    )
    assert [n for n, _ in sql_literals(f)] == [1]


def test_sql_lives_only_in_keel_store():
    found = [
        f"{p.relative_to(ROOT)}:{line}: {text}"
        for pkg in PACKAGES
        for p in sorted(pkg.rglob("*.py"))
        if STORE not in p.parents
        for line, text in sql_literals(p)
    ]
    assert not found, "SQL outside keel/store:\n" + "\n".join(found)
