"""Shared fixtures: a migrated database per test (SQLite file, or PostgreSQL when
STORYLOOM_TEST_DATABASE_URL is set), an injectable clock, and a Runtime over them.

The migrations run once per session into a template; each test gets a copy of it (a file copy on SQLite,
`CREATE DATABASE ... TEMPLATE` on PostgreSQL), so a test pays milliseconds, not a migration run."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.config import Config, parse_config
from storyloom.runtime import Runtime
from storyloom.store.db import Database, normalize_url
from storyloom.store.migrate import upgrade

PG_URL = os.environ.get("STORYLOOM_TEST_DATABASE_URL")
_counter = itertools.count()


def _pg_database(base_url: str, template: str | None = None) -> tuple[str, Any]:
    """A fresh database on the test server (a copy of `template` when given), and a function that drops it."""
    url = make_url(normalize_url(base_url))
    name = f"{url.database}_{os.getpid()}_{next(_counter)}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


def _migrated(url: str) -> None:
    database = Database(url)
    upgrade(database)
    database.dispose()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated once for the session: a SQLite file path, or a PostgreSQL database name."""
    if PG_URL:
        url, drop = _pg_database(PG_URL)
        _migrated(url)
        yield str(make_url(url).database)
        drop()
    else:
        path = tmp_path_factory.mktemp("template") / "storyloom.db"
        _migrated(f"sqlite:///{path}")
        yield str(path)


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database: for tests of the migrations and of processes that apply them."""
    if PG_URL:
        url, drop = _pg_database(PG_URL)
        yield url
        drop()
    else:
        yield f"sqlite:///{tmp_path / 'storyloom.db'}"


@pytest.fixture
def migrated_database_url(tmp_path: Path, migrated_template: str) -> Iterator[str]:
    """A database already at the latest migration, copied from the session's template."""
    if PG_URL:
        url, drop = _pg_database(PG_URL, template=migrated_template)
        yield url
        drop()
    else:
        path = tmp_path / "storyloom.db"
        shutil.copyfile(migrated_template, path)
        yield f"sqlite:///{path}"


@pytest.fixture
def db(migrated_database_url: str) -> Iterator[Database]:
    database = Database(migrated_database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


def make_config(**overrides: Any) -> Config:
    """A config for tests: the defaults with any top-level sections overridden."""
    return parse_config(overrides)


@pytest.fixture
def config() -> Config:
    return make_config()


@pytest.fixture
def rt(db: Database, config: Config, clock: FrozenClock) -> Runtime:
    return Runtime(config=config, db=db, clock=clock)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """The API and console in-process over `rt` (a module may override `rt` to change the config)."""
    with TestClient(create_app(rt)) as c:
        yield c
