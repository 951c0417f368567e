"""PostgreSQL connection settings from the config: each process's pool size and the statement timeout."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from storyloom.runtime import Runtime
from tests.conftest import make_config
from tests.support.postgres import fresh_postgres


def test_pool_size_and_statement_timeout_reach_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORYLOOM_DATABASE_URL", raising=False)
    with fresh_postgres("storyloom_settings") as url:
        config = make_config(database_url=url, database={"pool_size": 3, "statement_timeout": "500ms"})
        rt = Runtime.open(config)
        try:
            assert rt.db.engine.pool.size() == 3  # type: ignore[attr-defined]
            with rt.db.read() as conn:
                assert conn.execute(text("SHOW statement_timeout")).scalar() == "500ms"
                with pytest.raises(OperationalError, match="statement timeout"):
                    conn.execute(text("SELECT pg_sleep(3)"))
        finally:
            rt.db.dispose()


def test_config_check_refuses_a_pool_of_zero() -> None:
    from storyloom.config import ConfigError

    with pytest.raises(ConfigError, match=r"database\.pool_size"):
        make_config(database={"pool_size": 0})
