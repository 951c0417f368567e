"""Set-based writes shared by the batched alert path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Connection, Table, bindparam, update

KEY = "_key"


def update_many(conn: Connection, table: Table, key: Column[Any], rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE each row (`{KEY: key value, column: value, ...}`) with one executemany per set of columns."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(sorted(k for k in row if k != KEY)), []).append(row)
    for columns, batch in by_columns.items():
        stmt = update(table).where(key == bindparam(KEY)).values({c: bindparam(c) for c in columns})
        conn.execute(stmt, batch)
