"""SQL aggregate helpers the read queries share: conditional counts and nearest-rank percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select

PERCENTILES = (50, 95, 99)


def count_when(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def percentiles(
    conn: Connection, values: Any, column: Any, n: int, wanted: Sequence[int] = PERCENTILES
) -> dict[int, float | None]:
    """Nearest-rank percentiles of `column` over the `n` rows of the bounded subquery `values`.

    Each is one `ORDER BY ... LIMIT 1 OFFSET k` taken from the nearer end, so the database keeps at most
    half the sample in its top-N sorter (p95 and p99 only the few slowest).
    """
    out: dict[int, float | None] = dict.fromkeys(wanted)
    for p in wanted if n > 0 else ():
        rank = max(1, (n * p + 99) // 100)  # 1-based nearest rank
        from_top = n - rank
        if from_top < rank - 1:
            query = select(column).select_from(values).order_by(column.desc()).offset(from_top)
        else:
            query = select(column).select_from(values).order_by(column).offset(rank - 1)
        value = conn.execute(query.limit(1)).scalar()
        out[p] = None if value is None else float(value)
    return out
