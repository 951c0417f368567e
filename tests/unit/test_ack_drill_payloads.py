"""An acknowledgement and the drill mark in every receiver format, and through the stored notification
that retries and replays rebuild."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema

from storyloom.alerting.notification import notification_from_json, notification_json
from storyloom.alerting.receivers import alertmanager_webhook, pagerduty, slack, webhook
from storyloom.alerting.receivers.base import ReceiverSpec
from storyloom.domain.alerts import Acknowledgement
from tests.unit.test_renderers import PD_KEY, T1, make_alert, make_notification

ACK = Acknowledgement("Ana <ops>", "rolling back", T1)


def test_the_stored_notification_keeps_the_acknowledgement_and_the_drill_mark() -> None:
    alert = dataclasses.replace(make_alert(drill="true"), acknowledgement=ACK)
    stored = notification_json(make_notification(alert))

    [rebuilt] = notification_from_json(stored).alerts

    assert rebuilt.acknowledgement == ACK and rebuilt.drill
    assert stored["alerts"][0]["acknowledgement"] == {
        "by": "Ana <ops>",
        "note": "rolling back",
        "at": "2026-11-25T20:05:30Z",
    }
    assert stored["alerts"][0]["drill"] is True


def test_an_unacknowledged_real_alert_says_so() -> None:
    payload = make_alert().to_payload()
    assert payload["acknowledgement"] is None and payload["drill"] is False


def test_slack_names_the_owner_escaped_and_marks_a_drill() -> None:
    alert = dataclasses.replace(make_alert(drill="true"), acknowledgement=ACK)
    text = slack.alert_section(alert)["text"]["text"]
    assert "👤 Acknowledged by *Ana &lt;ops&gt;*: rolling back" in text
    assert "_Drill: a test alert, not an incident._" in text
    assert "Acknowledged" not in slack.alert_section(make_alert())["text"]["text"]


def test_pagerduty_and_alertmanager_carry_the_acknowledgement() -> None:
    alert = dataclasses.replace(make_alert(), acknowledgement=ACK)
    pd_spec = ReceiverSpec(name="pager", type="pagerduty", url="http://pd.test", routing_key=PD_KEY)
    details = pagerduty.event(pd_spec, make_notification(alert), alert)["payload"]["custom_details"]
    assert details["acknowledgement"] == ACK.to_payload() and details["plan_id"] == "plan-1"
    annotations = alertmanager_webhook.annotations_of(alert)
    assert (annotations["acknowledged_by"], annotations["acknowledged_note"]) == ("Ana <ops>", "rolling back")
    assert "acknowledged_by" not in alertmanager_webhook.annotations_of(make_alert())


def test_the_webhook_schema_accepts_an_acknowledged_drill_and_refuses_a_malformed_acknowledgement() -> None:
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "schemas" / "webhook-v1.json").read_text()
    )
    validator = jsonschema.Draft202012Validator(schema)
    spec = ReceiverSpec(name="ops", type="webhook", url="http://hooks.test")
    alert = dataclasses.replace(make_alert(drill="true"), acknowledgement=ACK)
    body = webhook.payload(spec, make_notification(alert))

    assert list(validator.iter_errors(body)) == []
    body["alerts"][0]["acknowledgement"] = {"by": "Ana"}
    assert list(validator.iter_errors(body)) != []
