from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from storyloom.alerting.receivers import alertmanager_webhook, pagerduty, slack
from storyloom.alerting.receivers.base import (
    RECEIVER_TYPES,
    RENDERERS,
    ReceiverSpec,
    RenderedRequest,
    render_unsigned,
    renderer_for,
)
from storyloom.domain.alerts import Alert, Notification, fingerprint

T0 = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 25, 20, 5, 30, tzinfo=UTC)
PD_KEY = "0123456789abcdef0123456789abcdef"


def make_alert(status: str = "firing", severity: str = "error", **labels: str) -> Alert:
    all_labels = {
        "alert_id": "planner:phase-failed",
        "severity": severity,
        "source": "planner_runner",
        "plan_id": "plan-1",
        "backlog_id": "scene-1-2",
        "task_id": "task-9",
        "phase": "scene_weaver",
        "agent_id": "agent-7",
        "persona_id": "persona-3",
        **labels,
    }
    return Alert(
        alert_id=all_labels["alert_id"],
        fingerprint=fingerprint(all_labels),
        status=status,
        severity=severity,
        title="Planner phase failed",
        description="scene-1-2 failed 3 times: provider timeout",
        labels=all_labels,
        starts_at=T0,
        ends_at=T1 if status == "resolved" else None,
        generated_at=T1,
        slo_minutes=15,
        slo_breached=False,
        runbook_url="http://127.0.0.1:8700/runbooks/planner:phase-failed",
        console_url="http://127.0.0.1:8700/alerts/" + fingerprint(all_labels),
    )


def make_notification(*alerts: Alert, truncated: int = 0) -> Notification:
    return Notification(
        notification_id="ntf_01",
        receiver="ops",
        group_key='{}:{alert_id="planner:phase-failed", plan_id="plan-1"}',
        group_labels={"alert_id": "planner:phase-failed", "plan_id": "plan-1"},
        alerts=alerts or (make_alert(),),
        environment="pre-alpha",
        routing_key="fiction-ops",
        truncated_alerts=truncated,
        external_url="http://127.0.0.1:8700",
    )


def spec(receiver_type: str, **kwargs: Any) -> ReceiverSpec:
    return ReceiverSpec(name="ops", type=receiver_type, url="https://receiver.example/hook", **kwargs)


def bodies(requests: list[RenderedRequest]) -> list[Any]:
    return [json.loads(r.body) for r in requests]


FIRING = make_alert()
RESOLVED = make_alert("resolved", severity="warning", backlog_id="scene-2-1")


def test_the_registry_knows_every_receiver_type() -> None:
    assert sorted(RENDERERS) == sorted(RECEIVER_TYPES)
    with pytest.raises(ValueError, match="unknown receiver type 'email'"):
        renderer_for("email")


# --- webhook ------------------------------------------------------------------------------------------


def test_webhook_body_is_exactly_the_contract() -> None:
    (request,) = render_unsigned(spec("webhook"), make_notification(FIRING, RESOLVED, truncated=2))
    body = json.loads(request.body)
    assert list(body) == [
        "version",
        "type",
        "source",
        "environment",
        "receiver",
        "routing_key",
        "group_key",
        "status",
        "group_labels",
        "alerts",
        "truncated_alerts",
    ]
    assert body["version"] == "1" and body["type"] == "storyloom.alerts"
    assert body["source"] == "storyloom" and body["environment"] == "pre-alpha"
    assert body["receiver"] == "ops" and body["routing_key"] == "fiction-ops"
    assert body["status"] == "firing" and body["truncated_alerts"] == 2
    assert body["group_labels"] == {"alert_id": "planner:phase-failed", "plan_id": "plan-1"}
    assert body["alerts"] == [FIRING.to_payload(), RESOLVED.to_payload()]
    assert list(body["alerts"][0]) == [
        "alert_id",
        "fingerprint",
        "status",
        "severity",
        "title",
        "description",
        "labels",
        "starts_at",
        "ends_at",
        "generated_at",
        "slo_minutes",
        "slo_breached",
        "runbook_url",
        "console_url",
        "acknowledgement",
        "drill",
    ]
    assert body["alerts"][0]["ends_at"] is None and body["alerts"][1]["ends_at"] == "2026-11-25T20:05:30Z"
    assert request.headers == {"content-type": "application/json"} and request.part == ""
    assert request.body.startswith(b'{"version":"1","type":"storyloom.alerts",')  # compact JSON


def test_the_spec_routing_key_fills_in_when_the_notification_has_none() -> None:
    notification = dataclasses.replace(make_notification(), routing_key=None)
    (body,) = bodies(render_unsigned(spec("webhook", routing_key="from-spec"), notification))
    assert body["routing_key"] == "from-spec"


def test_without_send_resolved_resolved_alerts_are_left_out() -> None:
    quiet = spec("webhook", send_resolved=False)
    (body,) = bodies(render_unsigned(quiet, make_notification(FIRING, RESOLVED)))
    assert [a["status"] for a in body["alerts"]] == ["firing"]
    assert render_unsigned(quiet, make_notification(RESOLVED)) == []
    (body,) = bodies(render_unsigned(spec("webhook"), make_notification(RESOLVED)))
    assert body["status"] == "resolved"


# --- slack --------------------------------------------------------------------------------------------


def test_slack_message_has_header_sections_and_context() -> None:
    (message,) = bodies(render_unsigned(spec("slack"), make_notification(FIRING, RESOLVED)))
    blocks = message["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    assert blocks[0]["text"]["type"] == "plain_text"
    assert blocks[0]["text"]["text"] == "🟠 [FIRING:1] Planner phase failed"
    first = blocks[1]
    assert "*Planner phase failed*" in first["text"]["text"]
    assert "<http://127.0.0.1:8700/runbooks/planner:phase-failed|Runbook>" in first["text"]["text"]
    assert f"<{FIRING.console_url}|Open in console>" in first["text"]["text"]
    fields = [f["text"].split("\n")[0] for f in first["fields"]]
    assert fields == ["*Severity*", "*Plan*", "*Backlog*", "*Task*", "*Agent*", "*Persona*"]
    assert "`scene-1-2`" in first["fields"][2]["text"]
    assert blocks[2]["text"]["text"].startswith("✅") and "(resolved)" in blocks[2]["text"]["text"]
    assert "pre-alpha" in blocks[-1]["elements"][0]["text"]
    assert message["text"] == "🟠 [FIRING:1] Planner phase failed (2 alerts) · pre-alpha"


def test_slack_resolved_notification_shows_a_check_mark() -> None:
    (message,) = bodies(render_unsigned(spec("slack"), make_notification(RESOLVED)))
    assert message["blocks"][0]["text"]["text"].startswith("✅ [RESOLVED]")
    assert message["text"].startswith("✅ [RESOLVED] Planner phase failed")


def test_slack_escapes_control_characters_and_keeps_within_limits() -> None:
    nasty = dataclasses.replace(
        FIRING, title="<!channel> & " + "x" * 300, description="a <b> & c" + "y" * 5000
    )
    many = tuple(dataclasses.replace(FIRING, fingerprint=f"f{i}") for i in range(30))
    (message,) = bodies(render_unsigned(spec("slack"), make_notification(nasty, *many, truncated=5)))
    blocks = message["blocks"]
    assert len(blocks) <= slack.MAX_BLOCKS
    assert len(blocks[0]["text"]["text"]) <= slack.HEADER_MAX
    section = blocks[1]["text"]["text"]
    assert "&lt;!channel&gt; &amp;" in section and "<!channel>" not in section
    assert len(section) <= slack.SECTION_MAX
    assert sum(1 for b in blocks if b["type"] == "section") == slack.MAX_ALERT_SECTIONS
    assert "…and 16 more alerts" in blocks[-1]["elements"][0]["text"]
    assert all(len(f["fields"]) <= 10 for f in blocks if f["type"] == "section")


def test_slack_header_reports_the_worst_firing_severity() -> None:
    critical = make_alert(severity="critical", plan_id="plan-2")
    info = make_alert(severity="info", plan_id="plan-3")
    (message,) = bodies(render_unsigned(spec("slack"), make_notification(info, critical)))
    assert message["blocks"][0]["text"]["text"].startswith("🔴 [FIRING:2]")


# --- pagerduty ----------------------------------------------------------------------------------------


def test_pagerduty_sends_one_event_per_alert() -> None:
    requests = render_unsigned(spec("pagerduty", routing_key=PD_KEY), make_notification(FIRING, RESOLVED))
    assert [r.part for r in requests] == [FIRING.fingerprint, RESOLVED.fingerprint]
    trigger, resolve = bodies(requests)
    assert trigger["routing_key"] == PD_KEY and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == FIRING.fingerprint
    assert trigger["payload"] == {
        "summary": "[pre-alpha] Planner phase failed: scene-1-2 failed 3 times: provider timeout",
        "source": "storyloom",
        "severity": "error",
        "timestamp": "2026-11-25T20:00:00Z",
        "class": "planner:phase-failed",
        "custom_details": FIRING.labels,
        "component": "scene_weaver",
        "group": "plan-1",
    }
    assert trigger["links"] == [
        {"href": FIRING.runbook_url, "text": "Runbook"},
        {"href": FIRING.console_url, "text": "Storyloom console"},
    ]
    assert trigger["client"] == "Storyloom" and trigger["client_url"] == "http://127.0.0.1:8700"
    assert resolve == {"routing_key": PD_KEY, "dedup_key": RESOLVED.fingerprint, "event_action": "resolve"}


@pytest.mark.parametrize("severity", ["info", "warning", "error", "critical"])
def test_pagerduty_severities_map_one_to_one(severity: str) -> None:
    alert = make_alert(severity=severity)
    (event,) = bodies(render_unsigned(spec("pagerduty", routing_key=PD_KEY), make_notification(alert)))
    assert event["payload"]["severity"] == severity


def test_pagerduty_summary_fits_and_resolves_respect_send_resolved() -> None:
    long = dataclasses.replace(FIRING, description="z" * 5000)
    (event,) = bodies(render_unsigned(spec("pagerduty", routing_key=PD_KEY), make_notification(long)))
    assert len(event["payload"]["summary"]) == pagerduty.SUMMARY_MAX
    quiet = spec("pagerduty", routing_key=PD_KEY, send_resolved=False)
    assert [r.part for r in render_unsigned(quiet, make_notification(FIRING, RESOLVED))] == [
        FIRING.fingerprint
    ]


# --- alertmanager webhook -----------------------------------------------------------------------------


def test_alertmanager_body_is_webhook_v4() -> None:
    (body,) = bodies(
        render_unsigned(spec("alertmanager_webhook"), make_notification(FIRING, RESOLVED, truncated=1))
    )
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert body["version"] == "4" and body["truncatedAlerts"] == 1 and body["status"] == "firing"
    assert body["groupKey"] == make_notification().group_key and body["receiver"] == "ops"
    assert body["externalURL"] == "http://127.0.0.1:8700"
    firing, resolved = body["alerts"]
    assert set(firing) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert firing["endsAt"] == alertmanager_webhook.ZERO_TIME == "0001-01-01T00:00:00Z"
    assert resolved["endsAt"] == "2026-11-25T20:05:30Z" and resolved["status"] == "resolved"
    assert firing["labels"]["alertname"] == "planner:phase-failed"
    assert firing["annotations"]["summary"] == "Planner phase failed"
    assert firing["annotations"]["runbook_url"] == FIRING.runbook_url
    assert firing["generatorURL"] == FIRING.console_url and firing["fingerprint"] == FIRING.fingerprint
    # Common labels: equal in both alerts; backlog_id and severity differ.
    assert body["commonLabels"]["plan_id"] == "plan-1"
    assert "backlog_id" not in body["commonLabels"] and "severity" not in body["commonLabels"]
    assert body["commonAnnotations"] == {
        "summary": "Planner phase failed",
        "description": FIRING.description,
        "runbook_url": FIRING.runbook_url,
    }


def test_alertmanager_keeps_the_alerts_own_annotations() -> None:
    annotated = dataclasses.replace(FIRING, annotations={"summary": "custom", "dashboard": "d1"})
    (body,) = bodies(render_unsigned(spec("alertmanager_webhook"), make_notification(annotated)))
    assert body["alerts"][0]["annotations"]["summary"] == "custom"
    assert body["commonAnnotations"]["dashboard"] == "d1"
