"""Schema migrations (Alembic), applied by `storyloom db upgrade` and on every start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from storyloom.store.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to call from many processes at once on PostgreSQL."""
    cfg = alembic_config(db)
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727101)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def revision(db: Database, message: str) -> None:
    """Developer helper: autogenerate a migration from the tables."""
    cfg = alembic_config(db)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)
