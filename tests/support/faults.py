"""Real database faults for tests: a trigger that makes matching writes fail, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy import text

from storyloom.store.db import Database


def reject_writes(db: Database, name: str, *, table: str, event: str, when: str, message: str) -> None:
    """Make every `event` (INSERT or UPDATE) on `table` whose new row matches `when` raise `message`.

    `when` is an SQL condition over `NEW` that both dialects read the same (`NEW.status = 'failed'`).
    """
    with db.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(
                text(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$"
                )
            )
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW "
                    f"WHEN ({when}) EXECUTE FUNCTION {name}()"
                )
            )
        else:
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW "
                    f"WHEN {when} BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )
            )


def allow_writes(db: Database, name: str, *, table: str) -> None:
    """Remove the fault `reject_writes` installed."""
    with db.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text(f"DROP TRIGGER {name} ON {table}"))
            conn.execute(text(f"DROP FUNCTION {name}()"))
        else:
            conn.execute(text(f"DROP TRIGGER {name}"))
