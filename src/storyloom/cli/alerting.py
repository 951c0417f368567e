"""Alert operations over the API: alerts, silences, deliveries, config reload."""

from __future__ import annotations

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

    @app.command("reload")
    def reload() -> None:
        """Ask the server to reload its config file."""
        result = ApiClient().post("/api/config/reload")
        typer.echo(result.get("status", "ok"))
