"""Shared fixtures: a migrated database per test (SQLite file, or PostgreSQL when
STORYLOOM_TEST_DATABASE_URL is set), an injectable clock, and a Runtime over them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storyloom.clock import FrozenClock
from storyloom.config import Config, parse_config
from storyloom.runtime import Runtime
from storyloom.store.db import Database, normalize_url
from storyloom.store.migrate import upgrade

PG_URL = os.environ.get("STORYLOOM_TEST_DATABASE_URL")
_counter = itertools.count()


def _pg_database(base_url: str) -> tuple[str, Any]:
    """A fresh database on the test server, and a function that drops it."""
    url = make_url(normalize_url(base_url))
    name = f"{url.database}_{os.getpid()}_{next(_counter)}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    if PG_URL:
        url, drop = _pg_database(PG_URL)
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path / 'storyloom.db'}"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


def make_config(**overrides: Any) -> Config:
    """A config for tests: the defaults with any top-level sections overridden."""
    return parse_config(overrides, env=dict(os.environ))


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def rt(db: Database, config: Config, clock: FrozenClock) -> Runtime:
    return Runtime(config=config, db=db, clock=clock)
