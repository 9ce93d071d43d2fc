"""DuckDB: the schema and the single read-write connection of the platform process.

DuckDB allows one read-write process. The platform (`keel up`) holds it while it runs; the CLI
opens the file itself only when no platform is running (see keel.cli.client).
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

import duckdb

from keel.errors import KeelError

SCHEMA_PACKAGE = "keel.store.schema"


class DatabaseError(KeelError, RuntimeError):
    """The database file cannot be opened (held by a running platform, unreadable)."""


def schema_statements() -> list[str]:
    """All schema files in name order; each part of Keel adds its own numbered file."""
    files = sorted(
        (f for f in resources.files(SCHEMA_PACKAGE).iterdir() if f.name.endswith(".sql")),
        key=lambda f: f.name,
    )
    return [f.read_text(encoding="utf-8") for f in files]


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the database and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.IOException as e:
        msg = str(e).splitlines()[0]
        if "lock" in msg.lower():
            raise DatabaseError(
                f"database {path} is held by another process (is `keel up` running? use its admin API)"
            ) from e
        raise DatabaseError(f"cannot open database {path}: {msg}") from e
    for sql in schema_statements():
        con.execute(sql)
    return con


class Database:
    """The platform's connection, shared by threads through cursors guarded by one lock for writes."""

    def __init__(self, path: Path):
        self.path = path
        self._con = connect(path)
        self.lock = threading.RLock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    def execute(self, sql: str, params: list | tuple | None = None) -> duckdb.DuckDBPyConnection:
        with self.lock:
            cur = self._con.cursor()
            cur.execute(sql, params or [])
            return cur

    def fetchall(self, sql: str, params: list | tuple | None = None) -> list[tuple]:
        cur = self.cursor()
        return cur.execute(sql, params or []).fetchall()

    def close(self) -> None:
        self._con.close()
