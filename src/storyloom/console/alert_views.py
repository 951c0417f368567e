"""Alerts as the console shows them: state (firing, silenced, inhibited), owners, receivers, the action it
offers, the silence that holds it, and the Overview's incident list (firing alerts grouped by plan and id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from storyloom.console.data import Reader, Who
from storyloom.console.render import SEVERITIES
from storyloom.domain.routing import receivers_for
from storyloom.runtime import Runtime

SILENCE_KEYS = ("alert_id", "plan_id", "backlog_id", "obligation_id", "receiver", "tool", "provider")


def routed_to(rt: Runtime, labels: dict[str, str]) -> list[str]:
    route = rt.alerting.route
    return list(dict.fromkeys(receivers_for(route, labels))) if route else []


def alert_view(
    alert: dict[str, Any],
    people: Who,
    sent_to: list[str],
    routed: list[str],
    silences: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An API alert plus what the console shows: state, owners, receivers, action, the silences holding it."""
    labels = alert.get("labels") or {}
    silenced = alert.get("silenced_by") or []
    inhibited = alert.get("inhibited_by") or []
    state = alert.get("status", "firing")
    if state == "firing" and silenced:
        state = "silenced"
    elif state == "firing" and inhibited:
        state = "inhibited"
    alert_id = alert.get("alert_id") or labels.get("alert_id", "")
    agent_id = labels.get("agent_id") or people.agent_for_persona(labels.get("persona_id"))
    persona_id = labels.get("persona_id") or people.persona_of_agent(agent_id)
    action = "silence"
    if alert.get("status") == "firing":
        if alert_id == "planner:phase-failed" and labels.get("backlog_id"):
            action = "resume"
        elif alert_id.startswith("obligation:") and labels.get("obligation_id"):
            action = "resolve"
    sent = list(dict.fromkeys(alert.get("receivers") or sent_to))
    known = silences or {}
    return {
        **alert,
        "alert_id": alert_id,
        "labels": labels,
        "state": state,
        "silenced_by": silenced,
        "inhibited_by": inhibited,
        "silences": [known[s] for s in silenced if s in known],
        "agent_id": agent_id,
        "persona_id": persona_id,
        "receivers": sent or routed,
        "receivers_label": "sent to" if sent else "routes to",
        "action": action,
        "runbook": f"/runbooks/{alert_id}",
        "matchers": silence_matchers(labels),
    }


def silence_matchers(labels: dict[str, str]) -> list[str]:
    """A silence pre-filled from an alert: its id and the labels that pin it to one thing."""
    return [f'{k}="{labels[k]}"' for k in SILENCE_KEYS if labels.get(k)]


def silences_by_id(read: Reader, alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The silences holding any of `alerts` (read only when one is silenced)."""
    if not any(a.get("silenced_by") for a in alerts):
        return {}
    return {str(s["id"]): s for s in read.silences()}


def alert_views(read: Reader, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    people = read.who()
    silences = silences_by_id(read, alerts)
    return [
        alert_view(
            a,
            people,
            read.sent_to(a["fingerprint"]),
            routed_to(read.rt, a.get("labels") or {}),
            silences,
        )
        for a in alerts
    ]


@dataclass(frozen=True)
class Incident:
    """Firing alerts of one id on one plan: the Overview's row."""

    alert_id: str
    plan_id: str
    plan_name: str
    severity: str
    title: str
    since: str
    alerts: tuple[dict[str, Any], ...]

    @property
    def count(self) -> int:
        return len(self.alerts)

    @property
    def href(self) -> str:
        """The alert itself when there is one, else the Alerts page filtered to the group."""
        if self.count == 1:
            return f"/alerts/{self.alerts[0]['fingerprint']}"
        query = {"state": self.alerts[0]["state"], "alert_id": self.alert_id, "plan_id": self.plan_id}
        return "/alerts?" + urlencode({k: v for k, v in query.items() if v}, safe=":")


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _since(alert: dict[str, Any]) -> str:
    value = alert.get("starts_at")
    return value.isoformat() if isinstance(value, datetime) else str(value or "")


def incidents(views: list[dict[str, Any]], people: Who) -> list[Incident]:
    """Alerts grouped by (plan, alert id), most severe first, then oldest first."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for view in views:
        key = (str(view["labels"].get("plan_id") or ""), str(view["alert_id"]))
        groups.setdefault(key, []).append(view)
    rows = []
    for (plan_id, alert_id), members in groups.items():
        members.sort(key=lambda a: (_rank(str(a.get("severity"))), _since(a)))
        rows.append(
            Incident(
                alert_id=alert_id,
                plan_id=plan_id,
                plan_name=people.plan(plan_id) if plan_id else "",
                severity=str(members[0].get("severity") or "info"),
                title=str(members[0].get("title") or alert_id),
                since=min(_since(a) for a in members),
                alerts=tuple(members),
            )
        )
    return sorted(rows, key=lambda row: (_rank(row.severity), row.since))


def triage(views: list[dict[str, Any]], people: Who) -> dict[str, list[Incident]]:
    """The Overview's three lists: what is firing, what a silence holds, what an inhibition holds."""
    return {
        state: incidents([v for v in views if v["state"] == state], people)
        for state in ("firing", "silenced", "inhibited")
    }
