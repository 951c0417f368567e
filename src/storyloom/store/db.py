"""Database engines: SQLite (WAL) embedded by default, PostgreSQL at scale, one code path."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def make_engine(
    url: str, *, pool_size: int = 10, statement_timeout_ms: int = 0, for_writes: bool = True
) -> Engine:
    """Writes on SQLite take the lock at BEGIN; a read engine begins deferred so readers never queue.

    On PostgreSQL each process keeps `pool_size` connections (and as many again in a burst), and a
    statement running longer than `statement_timeout_ms` (0: no limit) is cancelled by the server.
    """
    url = normalize_url(url)
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=NullPool if database in (None, "", ":memory:") else None,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate if for_writes else _sqlite_begin_deferred)
        if not for_writes:
            event.listen(engine, "connect", _sqlite_lenient_text)
        return engine
    options = {"options": f"-c statement_timeout={statement_timeout_ms}"} if statement_timeout_ms else {}
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args=options
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _sqlite_begin_immediate)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_lenient_text(dbapi_conn: Any, _record: Any) -> None:
    """Reads show text that is not UTF-8 (written by another tool) with U+FFFD instead of failing."""
    dbapi_conn.text_factory = _decode_lenient


def _decode_lenient(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _sqlite_begin_immediate(conn: Connection) -> None:
    """Take the write lock at BEGIN so read-then-write transactions never deadlock on upgrade."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin_deferred(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def after_commit(conn: Connection, hook: Callable[[], None]) -> None:
    """Run `hook` once the current unit of work has committed (used to wake the notifier and SSE)."""
    hooks = conn.info.get("after_commit")
    if hooks is None:
        hook()
    elif hook not in hooks:
        hooks.append(hook)


class Database:
    """The application database: a thin holder of the engine with a transaction helper."""

    def __init__(self, url: str, *, pool_size: int = 10, statement_timeout_ms: int = 0) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size, statement_timeout_ms=statement_timeout_ms)
        self.read_engine = make_engine(self.url, for_writes=False) if is_sqlite(self.url) else self.engine
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time and its busy handler sleeps in steps of up to 100 ms while it
        # waits; queueing this process's writers on a lock instead hands the write lock over at once.
        self._write_lock: contextlib.AbstractContextManager[object] = (
            threading.RLock() if self.dialect == "sqlite" else contextlib.nullcontext()
        )

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One unit of work: commits on success, rolls back on any exception, then runs after-commit hooks."""
        with self._write_lock, self.engine.begin() as conn:
            conn.info["after_commit"] = []
            yield conn
            hooks = conn.info.pop("after_commit")
        for hook in hooks:
            hook()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.read_engine.connect() as conn:
            yield conn
            conn.rollback()

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
