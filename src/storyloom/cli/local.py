"""Commands that work on the local database or config: db, token, config check, routes test."""

from __future__ import annotations

from pathlib import Path

import typer

from storyloom.cli.base import console, fail
from storyloom.config import Config, ConfigError, load_config


def load_or_fail(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as err:
        for line in err.problems:
            typer.echo(line)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
    token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
    config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
    routes_app = typer.Typer(help="Alert routing.", no_args_is_help=True)
    app.add_typer(db_app, name="db")
    app.add_typer(token_app, name="token")
    app.add_typer(config_app, name="config")
    app.add_typer(routes_app, name="routes")

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
        from storyloom.services.tokens import create_token
        from storyloom.store.db import Database
        from storyloom.store.migrate import upgrade

        db = Database(database_url(load_or_fail(config)))
        upgrade(db)
        try:
            with db.begin() as conn:
                token, _ = create_token(conn, name=name, role=role, agent_ids=agent, now=system_clock.now())
        except ServiceError as err:
            fail(err.detail)
        typer.echo(token)

    @config_app.command("check")
    def config_check(file: Path = typer.Argument(..., help="the YAML config to validate")) -> None:
        """Validate a config: prints `ok`, or one `<yaml.path>: <message>` line per problem."""
        load_or_fail(file)
        typer.echo("ok")

    @routes_app.command("test")
    def routes_test(
        labels: list[str] = typer.Argument(..., help="label=value pairs"),
        config: Path = typer.Option(..., "--config", envvar="STORYLOOM_CONFIG"),
    ) -> None:
        """Print the receivers an alert with these labels reaches, in routing order."""
        from storyloom.alerting.setup import receivers_for_labels

        parsed: dict[str, str] = {}
        for pair in labels:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                fail(f"invalid label {pair!r}: write label=value")
            parsed[key] = value.strip('"')
        for name in receivers_for_labels(load_or_fail(config), parsed):
            typer.echo(name)
