"""Acknowledging a firing alert over HTTP: who is on it shows on the alert, in the action log, the server
log, and every later notification (webhook, Slack, PagerDuty), and a re-fire starts unacknowledged."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from storyloom.alerting import publish
from storyloom.alerting.notification import notification_from_json
from storyloom.alerting.notifier import Notifier
from storyloom.alerting.publish import AlertSignal
from storyloom.alerting.receivers import pagerduty, slack, webhook
from storyloom.api.app import create_app
from storyloom.cli import app as cli_app
from storyloom.cli import base
from storyloom.clock import FrozenClock
from storyloom.runtime import Runtime
from storyloom.store.db import Database
from storyloom.store.events import BACKLOG_ACTION
from storyloom.store.tables import deliveries, workflow_events
from tests.support.deliveries import PD_KEY, SECRET, SECRET_ENV, receiver, runtime
from tests.support.plan_seed import token

M = timedelta(minutes=1)


@pytest.fixture
def rt(db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return runtime(
        db,
        clock,
        receiver("ops", "http://127.0.0.1:9/hooks"),
        receiver("chat", "http://127.0.0.1:9/slack", type="slack", secret_env=None),
        receiver("pager", "http://127.0.0.1:9/pd", type="pagerduty", routing_key=PD_KEY, secret_env=None),
    )


@pytest.fixture
def operator(rt: Runtime) -> dict[str, str]:
    return token(rt, "operator", name="ops-ana")


def fire(rt: Runtime) -> str:
    signal = AlertSignal("tool:failed", {"plan_id": "plan_1", "tool": "search"}, "search timed out")
    with rt.db.begin() as conn:
        return publish.fire(conn, signal, rt.clock.now())


def resolve(rt: Runtime, fingerprint: str) -> None:
    with rt.db.begin() as conn:
        publish.resolve(conn, [fingerprint], rt.clock.now())


def ack_path(fingerprint: str) -> str:
    return f"/api/alerts/{fingerprint}/acknowledge"


def shown(client: TestClient, fingerprint: str, headers: dict[str, str]) -> Any:
    return client.get(f"/api/alerts/{fingerprint}", headers=headers).json()["acknowledgement"]


def test_acknowledge_defaults_the_owner_to_the_caller_and_shows_on_the_alert(
    client: TestClient, rt: Runtime, operator: dict[str, str]
) -> None:
    fp = fire(rt)
    assert shown(client, fp, operator) is None

    response = client.post(ack_path(fp), json={"note": "rolling back the search tool"}, headers=operator)

    assert response.status_code == 200, response.text
    at = response.json()["at"]
    expected = {"by": "ops-ana", "note": "rolling back the search tool", "at": at}
    assert response.json() == {"fingerprint": fp, **expected}
    assert shown(client, fp, operator) == expected
    [listed] = client.get("/api/alerts", headers=operator).json()
    assert listed["acknowledgement"] == expected


def test_acknowledging_again_replaces_owner_and_note(
    client: TestClient, rt: Runtime, clock: FrozenClock, operator: dict[str, str]
) -> None:
    fp = fire(rt)
    client.post(ack_path(fp), json={"note": "looking"}, headers=operator)
    clock.advance(M)

    client.post(ack_path(fp), json={"owner": "Bo", "note": "handing over to Bo"}, headers=operator)

    assert shown(client, fp, operator)["by"] == "Bo"
    assert shown(client, fp, operator)["note"] == "handing over to Bo"


def test_acknowledge_writes_the_action_log_and_one_server_log_line_without_the_note(
    client: TestClient, rt: Runtime, operator: dict[str, str]
) -> None:
    fp = fire(rt)
    with structlog.testing.capture_logs() as logs:
        client.post(ack_path(fp), json={"note": "paste: Bearer abc"}, headers=operator)

    [line] = [entry for entry in logs if entry["event"] == "operator action"]
    assert line["action"] == "alert-acknowledge"
    assert (line["actor"], line["fingerprint"], line["owner"]) == ("ops-ana", fp, "ops-ana")
    assert line["plan_id"] == "plan_1"
    assert "Bearer" not in repr(line) and "note" not in line
    with rt.db.read() as conn:
        entries = conn.execute(
            select(workflow_events.c.payload).where(workflow_events.c.kind == BACKLOG_ACTION)
        ).scalars()
        [entry] = [e for e in entries if e["action"] == "alert-acknowledge"]
    assert (entry["fingerprint"], entry["note"], entry["actor"]) == (fp, "paste: Bearer abc", "ops-ana")


def test_unacknowledge_takes_it_back_and_a_second_time_is_a_conflict(
    client: TestClient, rt: Runtime, operator: dict[str, str]
) -> None:
    fp = fire(rt)
    client.post(ack_path(fp), headers=operator)

    taken_back = client.delete(ack_path(fp), headers=operator)

    assert taken_back.status_code == 200 and taken_back.json()["by"] == "ops-ana"
    assert shown(client, fp, operator) is None
    again = client.delete(ack_path(fp), headers=operator)
    assert again.status_code == 409 and "not acknowledged" in again.json()["detail"]


def test_a_resolved_alert_keeps_its_acknowledgement_and_a_re_fire_starts_unacknowledged(
    client: TestClient, rt: Runtime, operator: dict[str, str]
) -> None:
    fp = fire(rt)
    client.post(ack_path(fp), json={"note": "fixing"}, headers=operator)
    resolve(rt, fp)

    assert shown(client, fp, operator)["note"] == "fixing"
    refused = client.post(ack_path(fp), headers=operator)
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "resolved" in refused.json()["detail"]

    assert fire(rt) == fp
    assert shown(client, fp, operator) is None


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"note": "x" * 2001}, ["body", "note"]),
        ({"owner": "o" * 201}, ["body", "owner"]),
        ({"note": "nul\u0000"}, ["body", "note"]),
        ({"assignee": "Bo"}, ["body", "assignee"]),
    ],
)
def test_an_invalid_body_is_a_422_naming_the_field(
    client: TestClient, rt: Runtime, operator: dict[str, str], body: dict[str, Any], loc: list[str]
) -> None:
    response = client.post(ack_path(fire(rt)), json=body, headers=operator)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [loc]


def test_an_unknown_alert_is_a_404(client: TestClient, operator: dict[str, str]) -> None:
    response = client.post(ack_path("0123456789abcdef"), headers=operator)
    assert response.status_code == 404 and "GET /api/alerts" in response.json()["detail"]


def test_later_notifications_carry_the_acknowledgement_to_every_receiver_type(
    client: TestClient, rt: Runtime, operator: dict[str, str]
) -> None:
    fp = fire(rt)
    client.post(ack_path(fp), json={"owner": "Ana", "note": "rolling back"}, headers=operator)
    assert Notifier(rt).tick().deliveries == 3

    with rt.db.read() as conn:
        rows = conn.execute(select(deliveries.c.receiver, deliveries.c.notification)).all()
    notes = {name: notification_from_json(body) for name, body in rows}
    specs = rt.alerting.receivers
    [alert] = webhook.payload(specs["ops"], notes["ops"])["alerts"]
    assert alert["acknowledgement"] == {
        "by": "Ana",
        "note": "rolling back",
        "at": alert["acknowledgement"]["at"],
    }
    assert alert["drill"] is False
    slack_text = str(slack.message(specs["chat"], notes["chat"])["blocks"])
    assert "Acknowledged by *Ana*: rolling back" in slack_text
    event = pagerduty.event(specs["pager"], notes["pager"], notes["pager"].alerts[0])
    assert event["payload"]["custom_details"]["acknowledgement"]["by"] == "Ana"


def test_acknowledging_sends_nothing_by_itself(
    client: TestClient, rt: Runtime, clock: FrozenClock, operator: dict[str, str]
) -> None:
    fp = fire(rt)
    notifier = Notifier(rt)
    assert notifier.tick().deliveries == 3

    client.post(ack_path(fp), json={"note": "on it"}, headers=operator)
    clock.advance(5 * M)

    assert notifier.tick().deliveries == 0


def test_the_cli_acknowledges_and_takes_it_back(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    web = create_app(rt)
    monkeypatch.setattr(
        base.httpx,
        "Client",
        lambda base_url, timeout, headers: TestClient(web, base_url=base_url, headers=headers),
    )
    monkeypatch.setenv("STORYLOOM_TOKEN", token(rt, "operator", name="ops-ana")["Authorization"][7:])
    fp = fire(rt)
    runner = CliRunner()

    with structlog.testing.capture_logs():
        acked = runner.invoke(cli_app, ["alerts", "ack", fp, "--owner", "Bo", "--note", "on it"])
        shown_json = runner.invoke(cli_app, ["alerts", "show", fp, "--output", "json"])
        taken = runner.invoke(cli_app, ["alerts", "unack", fp, "--output", "json"])

    assert acked.exit_code == 0 and acked.stdout.strip() == f"acknowledged {fp} by Bo", acked.output
    assert json.loads(shown_json.stdout)["acknowledgement"]["note"] == "on it"
    assert taken.exit_code == 0 and json.loads(taken.stdout)["by"] == "Bo"
