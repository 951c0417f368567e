"""All-time aggregates over `planner_executions` that stay cheap at millions of rows.

The first read aggregates every execution in SQL; later reads aggregate only the executions with a
higher id and add them to the running totals kept in this process (one set per database URL and
aggregate). Executions are only ever inserted, so the totals are exact:

- on SQLite there is one writer at a time, so every id below the highest committed id has committed;
- on PostgreSQL ids commit out of order, so only executions at or below the newest id that finished
  `PG_SETTLE` ago are folded into the totals; the newer tail is aggregated afresh at each read.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select

from storyloom.store.tables import planner_executions

PG_SETTLE = timedelta(seconds=30)

Key = tuple[str, ...]


@dataclass
class _State:
    cursor: int = 0
    totals: dict[Key, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class IncrementalTotals:
    """SUM-style aggregates of executions grouped by some columns, advanced by id."""

    def __init__(self, name: str, group_by: Sequence[Any], values: Sequence[ColumnElement[Any]]) -> None:
        self.name = name
        self.group_by = tuple(group_by)
        self.values = tuple(values)
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def _state(self, url: str) -> _State:
        with self._lock:
            return self._states.setdefault(url, _State())

    def _aggregate(self, conn: Connection, low: int, high: int | None) -> dict[Key, list[float]]:
        pe = planner_executions.c
        query = select(*self.group_by, *self.values).where(pe.id > low)
        if high is not None:
            query = query.where(pe.id <= high)
        out: dict[Key, list[float]] = {}
        width = len(self.group_by)
        for row in conn.execute(query.group_by(*self.group_by)):
            out[tuple(str(v) for v in row[:width])] = [float(v or 0) for v in row[width:]]
        return out

    def read(self, conn: Connection, now: datetime) -> dict[Key, list[float]]:
        """The totals per group, exact as of this read."""
        pe = planner_executions.c
        state = self._state(str(conn.engine.url))
        postgres = conn.dialect.name == "postgresql"
        with state.lock:
            newest = conn.execute(select(func.max(pe.id))).scalar()
            if newest is None or newest < state.cursor:  # empty or another database at the same URL
                state.cursor, state.totals = 0, {}
                if newest is None:
                    return {}
            settled = newest
            if postgres:
                settled = conn.execute(
                    select(func.max(pe.id)).where(pe.finished_at <= now - PG_SETTLE)
                ).scalar()
            if settled is not None and settled > state.cursor:
                for key, values in self._aggregate(conn, state.cursor, settled).items():
                    current = state.totals.setdefault(key, [0.0] * len(values))
                    for i, value in enumerate(values):
                        current[i] += value
                state.cursor = int(settled)
            result = {key: list(values) for key, values in state.totals.items()}
            cursor = state.cursor
        if cursor < newest:  # PostgreSQL: the unsettled tail, aggregated afresh
            for key, values in self._aggregate(conn, cursor, None).items():
                current = result.setdefault(key, [0.0] * len(values))
                for i, value in enumerate(values):
                    current[i] += value
        return result


OUTCOMES = IncrementalTotals("outcomes", [planner_executions.c.outcome], [func.count()])


def outcome_counts(conn: Connection, now: datetime) -> dict[str, int]:
    """Executions per outcome, all time."""
    return {key[0]: int(values[0]) for key, values in OUTCOMES.read(conn, now).items()}
