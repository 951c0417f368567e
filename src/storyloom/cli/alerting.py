"""Alert operations over the API: alerts, silences, deliveries, routes test, config reload."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from storyloom.cli.base import ApiClient, fail
from storyloom.cli.output import (
    Output,
    Section,
    chosen,
    output_option,
    print_json,
    print_record,
    print_result,
    print_rows,
)
from storyloom.domain.durations import parse_duration

ALERT_FIELDS = (
    "fingerprint",
    "alert_id",
    "status",
    "severity",
    "title",
    "description",
    "starts_at",
    "ends_at",
    "generated_at",
    "slo_minutes",
    "slo_breached",
    "receivers",
    "acknowledgement",
    "runbook_url",
    "console_url",
)
NOTIFICATION_COLUMNS = [
    "delivery_id",
    "receiver",
    "status",
    "alert_status",
    "attempts",
    "created_at",
    "last_error",
]
DRILL_COLUMNS = ["receiver", "outcome", "latency_ms", "status_code", "attempts", "error"]


def _subject(labels: dict[str, str]) -> str:
    """What an alert is about, from its labels, in one cell."""
    return " ".join(f"{k}={labels[k]}" for k in ("plan_id", "backlog_id", "task_id") if k in labels)


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
        output: Output = output_option(),
    ) -> None:
        """List alerts."""
        alerts = ApiClient().get(
            "/api/alerts", status=status, severity=severity, plan_id=plan_id, alert_id=alert_id
        )
        rows = [{**a, "subject": _subject(a["labels"])} for a in alerts]
        print_rows(
            rows,
            ["fingerprint", "alert_id", "status", "severity", "subject", "starts_at"],
            title="alerts",
            output=output,
            data=alerts,
        )

    @alerts_app.command("show")
    def alerts_show(fingerprint: str, output: Output = output_option()) -> None:
        """One alert with its labels, state history and notifications."""
        alert = ApiClient().get(f"/api/alerts/{fingerprint}")
        print_record(
            {k: alert.get(k) for k in ALERT_FIELDS},
            [
                Section(
                    "labels",
                    [{"label": k, "value": v} for k, v in alert["labels"].items()],
                    ["label", "value"],
                ),
                Section("history", alert.get("history", []), ["at", "status", "severity", "reason"]),
                Section("notifications", alert.get("notifications", []), NOTIFICATION_COLUMNS),
            ],
            output=output,
            data=alert,
        )

    @alerts_app.command("ack")
    def alerts_ack(
        fingerprint: str,
        owner: str | None = typer.Option(None, "--owner", help="who is on it (default: your token's name)"),
        note: str = typer.Option("", "--note", help="what is being done"),
        output: Output = output_option(),
    ) -> None:
        """Acknowledge a firing alert: later notifications say who is on it. Sends nothing now."""
        body = {"note": note, **({"owner": owner} if owner else {})}
        ack = ApiClient().post(f"/api/alerts/{fingerprint}/acknowledge", body)
        print_result(f"acknowledged {fingerprint} by {ack['by']}", ack, output=output)

    @alerts_app.command("unack")
    def alerts_unack(fingerprint: str, output: Output = output_option()) -> None:
        """Take back the acknowledgement of a firing alert."""
        ack = ApiClient().delete(f"/api/alerts/{fingerprint}/acknowledge")
        print_result(f"unacknowledged {fingerprint} (was {ack['by']})", ack, output=output)

    @app.command("drill")
    def drill(
        alert_id: str = typer.Argument("storyloom:drill", help="the alert id the drill alert carries"),
        receiver: str | None = typer.Option(None, "--receiver", help="send it to this receiver only"),
        timeout: str = typer.Option("60s", "--timeout", help="how long to wait for the receivers' answers"),
        output: Output = output_option(),
    ) -> None:
        """Send a drill alert (drill="true") through routing, grouping, signing and delivery, print each
        receiver's outcome and latency, then resolve it. Exits 1 unless every receiver got it."""
        try:
            wait = parse_duration(timeout)
        except ValueError as err:
            fail(f"--timeout: {err}")
        body = {"alert_id": alert_id, "timeout": timeout, **({"receiver": receiver} if receiver else {})}
        report = ApiClient().request("POST", "/api/drills", json=body, timeout=wait.total_seconds() + 30)
        if chosen(output) is Output.TABLE:
            typer.echo(
                f"drill {report['drill_id']} ({report['alert_id']}), resolved at {report['resolved_at']}"
            )
        print_rows(report["receivers"], DRILL_COLUMNS, title="receivers", output=output, data=report)
        if not report["receivers"] or any(r["outcome"] != "delivered" for r in report["receivers"]):
            raise typer.Exit(1)

    @silences_app.command("add")
    def silences_add(
        matcher: list[str] = typer.Option(..., "--matcher", help='e.g. alert_id="planner:phase-failed"'),
        duration: str = typer.Option("2h", "--duration"),
        comment: str = typer.Option(..., "--comment"),
        output: Output = output_option(),
    ) -> None:
        """Silence alerts matching every matcher for a duration; prints the silence's id."""
        try:
            length = parse_duration(duration)
        except ValueError as err:
            fail(f"--duration: {err}")
        ends_at = (datetime.now(UTC) + length).isoformat().replace("+00:00", "Z")
        silence = ApiClient().post(
            "/api/silences", {"matchers": matcher, "ends_at": ends_at, "comment": comment}
        )
        print_result(silence["id"], silence, output=output)

    @silences_app.command("list")
    def silences_list(output: Output = output_option()) -> None:
        """List silences."""
        rows = ApiClient().get("/api/silences")
        print_rows(
            rows,
            ["id", "status", "matchers", "ends_at", "created_by", "comment"],
            title="silences",
            output=output,
        )

    @silences_app.command("expire")
    def silences_expire(silence_id: str, output: Output = output_option()) -> None:
        """Expire a silence now."""
        result = ApiClient().delete(f"/api/silences/{silence_id}")
        print_result(f"expired {silence_id}", result, output=output)

    @deliveries_app.command("list")
    def deliveries_list(
        receiver: str | None = typer.Option(None, "--receiver"),
        status: str | None = typer.Option(None, "--status", help="pending, delivered, failed or dead"),
        output: Output = output_option(),
    ) -> None:
        """List webhook deliveries."""
        rows = ApiClient().get("/api/deliveries", receiver=receiver, status=status)
        print_rows(
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
            title="deliveries",
            output=output,
        )

    @deliveries_app.command("replay")
    def deliveries_replay(delivery_id: str, output: Output = output_option()) -> None:
        """Re-send a delivery with the same webhook-id."""
        result = ApiClient().post(f"/api/deliveries/{delivery_id}/replay")
        print_result(f"replaying {delivery_id} as {result['id']}", result, output=output)

    @routes_app.command("test")
    def routes_test(
        labels: list[str] = typer.Argument(..., help="label=value pairs"),
        config: Path | None = typer.Option(
            None,
            "--config",
            help="evaluate this config file locally instead of asking the running server "
            "(STORYLOOM_URL, STORYLOOM_TOKEN)",
        ),
        output: Output = output_option(),
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
        if chosen(output) is Output.JSON:
            print_json(answer)
            return
        for name in answer["receivers"]:
            typer.echo(name)

    @app.command("reload")
    def reload(output: Output = output_option()) -> None:
        """Ask the server to reload its config file."""
        result = ApiClient().post("/api/config/reload")
        print_result(result.get("status", "ok"), result, output=output)


def _route_test_locally(path: Path, labels: dict[str, str]) -> dict[str, Any]:
    """The answer `POST /api/alert-routes/test` gives on a server running this config file."""
    from storyloom.alerting.setup import SecretPlaceholders, routing_without_secrets
    from storyloom.cli.local import load_or_fail, refuse
    from storyloom.config import ConfigError
    from storyloom.demo_receiver import served_routing
    from storyloom.services.alerts import match_routes

    config = served_routing(load_or_fail(path, env=SecretPlaceholders()))
    try:
        return match_routes(routing_without_secrets(config), labels)
    except ConfigError as err:
        refuse(err)
