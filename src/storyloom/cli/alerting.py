"""Alert operations over the API: alerts, silences, deliveries, routes test, config reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from storyloom.cli.base import ApiClient, fail, output_option, print_json, print_table
from storyloom.domain.durations import parse_duration


def register(app: typer.Typer) -> None:
    alerts_app = typer.Typer(help="Alerts.", no_args_is_help=True)
    silences_app = typer.Typer(help="Silences.", no_args_is_help=True)
    deliveries_app = typer.Typer(help="Webhook deliveries.", no_args_is_help=True)
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(silences_app, name="silences")
    app.add_typer(deliveries_app, name="deliveries")
    routes_app = typer.Typer(help="Alert routing.", no_args_is_help=True)
    app.add_typer(routes_app, name="routes")

    @alerts_app.command("list")
    def alerts_list(
        status: str = typer.Option("firing", "--status", help="firing, resolved or all"),
        severity: str | None = typer.Option(None, "--severity"),
        plan_id: str | None = typer.Option(None, "--plan-id"),
        alert_id: str | None = typer.Option(None, "--alert-id"),
        as_json: bool = output_option(),
    ) -> None:
        """List alerts."""
        rows = ApiClient().get(
            "/api/alerts", status=status, severity=severity, plan_id=plan_id, alert_id=alert_id
        )
        if as_json:
            print_json(rows)
            return
        for r in rows:
            labels = r["labels"]
            r["subject"] = " ".join(
                f"{k}={labels[k]}" for k in ("plan_id", "backlog_id", "task_id") if k in labels
            )
        print_table(rows, ["alert_id", "status", "severity", "fingerprint", "subject", "starts_at"], "alerts")

    @alerts_app.command("show")
    def alerts_show(fingerprint: str) -> None:
        """One alert with its state history and notifications."""
        print_json(ApiClient().get(f"/api/alerts/{fingerprint}"))

    @silences_app.command("add")
    def silences_add(
        matcher: list[str] = typer.Option(..., "--matcher", help='e.g. alert_id="planner:phase-failed"'),
        duration: str = typer.Option("2h", "--duration"),
        comment: str = typer.Option(..., "--comment"),
    ) -> None:
        """Silence alerts matching every matcher for a duration."""
        try:
            seconds = parse_duration(duration).total_seconds()
        except ValueError as err:
            fail(f"--duration: {err}")
        from datetime import UTC, datetime, timedelta

        ends_at = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
        silence = ApiClient().post(
            "/api/silences", {"matchers": matcher, "ends_at": ends_at, "comment": comment}
        )
        typer.echo(silence["id"])

    @silences_app.command("list")
    def silences_list(as_json: bool = output_option()) -> None:
        """List silences."""
        rows = ApiClient().get("/api/silences")
        if as_json:
            print_json(rows)
            return
        for r in rows:
            r["matchers"] = ", ".join(r["matchers"])
        print_table(rows, ["id", "status", "matchers", "ends_at", "created_by", "comment"], "silences")

    @silences_app.command("expire")
    def silences_expire(silence_id: str) -> None:
        """Expire a silence now."""
        ApiClient().delete(f"/api/silences/{silence_id}")
        typer.echo(f"expired {silence_id}")

    @deliveries_app.command("list")
    def deliveries_list(
        receiver: str | None = typer.Option(None, "--receiver"),
        status: str | None = typer.Option(None, "--status", help="pending, delivered, failed or dead"),
        as_json: bool = output_option(),
    ) -> None:
        """List webhook deliveries."""
        rows = ApiClient().get("/api/deliveries", receiver=receiver, status=status)
        if as_json:
            print_json(rows)
        else:
            print_table(
                rows,
                [
                    "id",
                    "receiver",
                    "status",
                    "alert_status",
                    "attempts",
                    "last_status_code",
                    "last_error",
                    "next_attempt_at",
                ],
                "deliveries",
            )

    @deliveries_app.command("replay")
    def deliveries_replay(delivery_id: str) -> None:
        """Re-send a delivery with the same webhook-id."""
        result = ApiClient().post(f"/api/deliveries/{delivery_id}/replay")
        typer.echo(f"replaying {delivery_id} as {result['id']}")

    @routes_app.command("test")
    def routes_test(
        labels: list[str] = typer.Argument(..., help="label=value pairs"),
        config: Path | None = typer.Option(
            None,
            "--config",
            help="evaluate this config file locally instead of asking the running server "
            "(STORYLOOM_URL, STORYLOOM_TOKEN)",
        ),
    ) -> None:
        """Print the receivers an alert with these labels reaches, one per line, in routing order."""
        parsed: dict[str, str] = {}
        for pair in labels:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                fail(f"invalid label {pair!r}: write label=value")
            parsed[key] = value.strip('"')
        if config is None:
            answer = ApiClient().post("/api/alert-routes/test", {"labels": parsed})
        else:
            answer = _route_test_locally(config, parsed)
        for name in answer["receivers"]:
            typer.echo(name)

    @app.command("reload")
    def reload() -> None:
        """Ask the server to reload its config file."""
        result = ApiClient().post("/api/config/reload")
        typer.echo(result.get("status", "ok"))


def _route_test_locally(path: Path, labels: dict[str, str]) -> dict[str, Any]:
    """The answer `POST /api/alert-routes/test` gives on a server running this config file."""
    from storyloom.alerting.setup import SecretPlaceholders, routing_without_secrets
    from storyloom.cli.local import load_or_fail, refuse
    from storyloom.config import ConfigError
    from storyloom.demo import served_routing
    from storyloom.services.alerts import match_routes

    config = served_routing(load_or_fail(path, env=SecretPlaceholders()))
    try:
        return match_routes(routing_without_secrets(config), labels)
    except ConfigError as err:
        refuse(err)
