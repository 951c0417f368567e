"""Aggregation groups as stored: `aggregation_groups` (timers, last-notified sets) and `group_members`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select

from storyloom.alerting.rows import chunks
from storyloom.domain.grouping import GroupState
from storyloom.store.tables import aggregation_groups, group_members


@dataclass(frozen=True)
class GroupRecord:
    """One aggregation group: which route and receiver it belongs to, its labels and its timers."""

    group_key: str
    route_id: str
    receiver: str
    group_labels: dict[str, str]
    state: GroupState


def group_from_row(row: Mapping[Any, Any]) -> GroupRecord:
    return GroupRecord(
        group_key=row["group_key"],
        route_id=row["route_id"],
        receiver=row["receiver"],
        group_labels=dict(row["group_labels"] or {}),
        state=GroupState(
            first_alert_at=row["first_alert_at"],
            next_flush_at=row["next_flush_at"],
            last_flush_at=row["last_flush_at"],
            last_notified_at=row["last_notified_at"],
            last_firing=frozenset(row["last_firing"] or ()),
            last_resolved=frozenset(row["last_resolved"] or ()),
        ),
    )


def state_values(state: GroupState) -> dict[str, Any]:
    """The `aggregation_groups` columns a group state writes."""
    return {
        "next_flush_at": state.next_flush_at,
        "last_flush_at": state.last_flush_at,
        "last_notified_at": state.last_notified_at,
        "last_firing": sorted(state.last_firing),
        "last_resolved": sorted(state.last_resolved),
    }


def load_groups(conn: Connection, keys: Collection[str]) -> dict[str, GroupRecord]:
    found: dict[str, GroupRecord] = {}
    for chunk in chunks(sorted(keys)):
        for row in conn.execute(
            select(aggregation_groups).where(aggregation_groups.c.group_key.in_(chunk))
        ).mappings():
            found[row["group_key"]] = group_from_row(row)
    return found


def members_of(conn: Connection, keys: Sequence[str]) -> dict[str, list[str]]:
    """Each group's member fingerprints, oldest first."""
    found: dict[str, list[str]] = {}
    for chunk in chunks(keys):
        rows = conn.execute(
            select(group_members.c.group_key, group_members.c.fingerprint)
            .where(group_members.c.group_key.in_(chunk))
            .order_by(group_members.c.added_at, group_members.c.fingerprint)
        )
        for row in rows:
            found.setdefault(row.group_key, []).append(row.fingerprint)
    return found


def groups_holding(conn: Connection, fingerprints: Sequence[str]) -> set[str]:
    """The keys of the groups these alerts are members of."""
    found: set[str] = set()
    for chunk in chunks(sorted(set(fingerprints))):
        found.update(
            conn.execute(
                select(group_members.c.group_key).where(group_members.c.fingerprint.in_(chunk))
            ).scalars()
        )
    return found


def add_members(conn: Connection, members: Iterable[tuple[str, str]], now: datetime) -> None:
    """Insert the memberships not stored yet (looked up by fingerprint: an alert is in few groups)."""
    wanted = set(members)
    if not wanted:
        return
    present: set[tuple[str, str]] = set()
    for chunk in chunks(sorted({fp for _, fp in wanted})):
        rows = conn.execute(
            select(group_members.c.group_key, group_members.c.fingerprint).where(
                group_members.c.fingerprint.in_(chunk)
            )
        )
        present.update((r.group_key, r.fingerprint) for r in rows)
    new = sorted(wanted - present)
    if new:
        conn.execute(
            insert(group_members), [{"group_key": key, "fingerprint": fp, "added_at": now} for key, fp in new]
        )


def remove_members(conn: Connection, pairs: Sequence[tuple[str, str]]) -> None:
    """Delete these (group key, fingerprint) memberships in one executemany."""
    if pairs:
        conn.execute(
            delete(group_members).where(
                group_members.c.group_key == bindparam("key"), group_members.c.fingerprint == bindparam("fp")
            ),
            [{"key": key, "fp": fp} for key, fp in pairs],
        )
