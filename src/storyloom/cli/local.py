"""Commands that work on the local database or config: db, token, config check."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import typer

from storyloom.cli.base import console, fail
from storyloom.config import Config, ConfigError
from storyloom.runtime import load_checked_config


def load_or_fail(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """The config (env: where `secret_env` variables are read), or exit 1 printing the `config check` lines."""
    try:
        return load_checked_config(path, env=env)
    except ConfigError as err:
        refuse(err)


def refuse(err: ConfigError) -> NoReturn:
    """Print the `config check` lines of a config that cannot be used, and exit 1 (no traceback)."""
    for line in err.problems:
        typer.echo(line)
    raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
    token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
    config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
    app.add_typer(db_app, name="db")
    app.add_typer(token_app, name="token")
    app.add_typer(config_app, name="config")

    @db_app.command("upgrade")
    def db_upgrade(config: Path | None = typer.Option(None, "--config", envvar="STORYLOOM_CONFIG")) -> None:
        """Apply database migrations."""
        from storyloom.config import database_url
        from storyloom.store.db import Database
        from storyloom.store.migrate import upgrade

        db = Database(database_url(load_or_fail(config)))
        upgrade(db)
        console.print("database is up to date")

    @token_app.command("create")
    def token_create(
        role: str = typer.Option(..., "--role", help="viewer, operator or admin"),
        name: str = typer.Option(..., "--name", help="who the token is for (shown as the actor)"),
        agent: list[str] = typer.Option([], "--agent", help="restrict the token to act only as this agent"),
        config: Path | None = typer.Option(None, "--config", envvar="STORYLOOM_CONFIG"),
    ) -> None:
        """Create an API token and print it once."""
        from storyloom.clock import system_clock
        from storyloom.config import database_url
        from storyloom.services.errors import ServiceError
        from storyloom.services.tokens import issue_token
        from storyloom.store.db import Database
        from storyloom.store.migrate import upgrade

        db = Database(database_url(load_or_fail(config)))
        upgrade(db)
        try:
            token = issue_token(db, name=name, role=role, agent_ids=agent, now=system_clock.now())
        except ServiceError as err:
            fail(err.detail)
        typer.echo(token)

    @config_app.command("check")
    def config_check(file: Path = typer.Argument(..., help="the YAML config to validate")) -> None:
        """Validate a config: prints `ok`, or one `<yaml.path>: <message>` line per problem."""
        load_or_fail(file)
        typer.echo("ok")
