"""Rows out of DuckDB as JSON-ready dicts: JSON columns decoded, timestamps as ISO strings."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import duckdb


def as_dicts(cur: duckdb.DuckDBPyConnection, json_cols: Iterable[str]) -> list[dict[str, Any]]:
    """Every row of an executed cursor; ``json_cols`` are stored as JSON text and come back decoded."""
    decode = set(json_cols)
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        item = dict(zip(names, row, strict=True))
        for k, v in item.items():
            if k in decode and isinstance(v, str):
                item[k] = json.loads(v)
            elif hasattr(v, "isoformat"):
                item[k] = v.isoformat()
        out.append(item)
    return out
