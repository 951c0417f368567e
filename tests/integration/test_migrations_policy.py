"""Migrations are safe to run while older processes still run: two upgrades at once on PostgreSQL take turns,
and every migration after the first only expands the schema (a contraction must say so)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from storyloom.store.migrate import MIGRATIONS
from tests.support.postgres import fresh_postgres

# What an older worker cannot live with: a table or column it still reads disappearing or changing type,
# or a column it does not write becoming required.
CONTRACTING = re.compile(
    r"op\.(drop_table|drop_column|rename_table)|alter_column\([^)]*(nullable=False|type_=)", re.S
)
CONTRACT_MARK = "# contract:"  # a deliberate contraction, after the release that stopped using it


def _upgrade_source(path: Path) -> str:
    """The text of a migration's `upgrade()` (its `downgrade()` undoes it, and may drop what it added)."""
    text_ = path.read_text()
    (upgrade,) = [n for n in ast.parse(text_).body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    return ast.get_source_segment(text_, upgrade) or ""


def test_every_migration_after_the_first_only_expands() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS))
    offenders = []
    for revision in scripts.walk_revisions():
        if revision.down_revision is None:
            continue  # the initial schema creates everything
        source = _upgrade_source(Path(str(revision.path)))
        if CONTRACTING.search(source) and CONTRACT_MARK not in source:
            offenders.append(Path(str(revision.path)).name)
    assert offenders == [], (
        "these migrations drop or tighten what older workers still use; expand now, contract in a later "
        f"release and mark it with '{CONTRACT_MARK} <why it is safe>': {offenders}"
    )


def test_two_upgrades_at_once_take_turns_on_postgresql(tmp_path: Path) -> None:
    with fresh_postgres("storyloom_migrate") as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STORYLOOM_")}
        env.update(STORYLOOM_DATABASE_URL=url, STORYLOOM_DATA_DIR=str(tmp_path))
        upgrades = [
            subprocess.Popen(
                [sys.executable, "-m", "storyloom", "db", "upgrade"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [(p.wait(timeout=120), *p.communicate()) for p in upgrades]
        assert [r[0] for r in results] == [0, 0], results
        engine = create_engine(url)
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        engine.dispose()
        assert version == [ScriptDirectory(str(MIGRATIONS)).get_current_head()]
