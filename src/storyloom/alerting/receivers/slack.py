"""Slack incoming-webhook messages in Block Kit, with a plain `text` fallback for notifications."""

from __future__ import annotations

from typing import Any

from storyloom.alerting.receivers.base import ReceiverSpec, RenderedRequest, json_request, register
from storyloom.domain.alerts import FIRING, RESOLVED, Acknowledgement, Alert, Notification

# Slack's documented limits: a message has at most 50 blocks, a header 150 characters,
# a section text 3000, a section at most 10 fields of 2000 characters each.
MAX_BLOCKS = 50
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
MAX_ALERT_SECTIONS = 20

RESOLVED_ICON = "✅"
SEVERITY_ICON = {"critical": "🔴", "error": "🟠", "warning": "🟡", "info": "🔵"}
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}
FIELDS = (
    ("Plan", "plan_id"),
    ("Backlog", "backlog_id"),
    ("Task", "task_id"),
    ("Agent", "agent_id"),
    ("Persona", "persona_id"),
)


def escape(text: str) -> str:
    """Slack mrkdwn control characters; everything else shows as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def link(url: str, label: str) -> str:
    safe = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")
    return f"<{safe}|{label}>"


def icon_of(alert: Alert) -> str:
    return RESOLVED_ICON if alert.status == RESOLVED else SEVERITY_ICON.get(alert.severity, "⚪")


def title_of(notification: Notification) -> str:
    """The alert title when the group is one kind of alert, else a count."""
    titles = {a.title for a in notification.alerts}
    if len(titles) == 1:
        return next(iter(titles))
    return f"{len(notification.alerts)} Storyloom alerts"


def status_tag(notification: Notification) -> str:
    """`✅ [RESOLVED]`, or `[FIRING:n]` led by the icon of the worst firing severity."""
    firing = [a for a in notification.alerts if a.status == FIRING]
    if not firing:
        return f"{RESOLVED_ICON} [RESOLVED]"
    worst = max(firing, key=lambda a: SEVERITY_RANK.get(a.severity, 0))
    return f"{icon_of(worst)} [FIRING:{len(firing)}]"


def acknowledged_line(ack: Acknowledgement) -> str:
    """`👤 Acknowledged by Ana: rolling back` (the note left out when empty)."""
    text = f"👤 Acknowledged by *{escape(ack.by)}*"
    return text + (f": {escape(ack.note)}" if ack.note else "")


def alert_section(alert: Alert) -> dict[str, Any]:
    lines = [
        f"{icon_of(alert)} *{escape(alert.title)}*" + (" (resolved)" if alert.status == RESOLVED else "")
    ]
    if alert.description:
        lines.append(escape(alert.description))
    if alert.drill:
        lines.append("_Drill: a test alert, not an incident._")
    if alert.acknowledgement:
        lines.append(acknowledged_line(alert.acknowledgement))
    links = [
        link(u, t) for u, t in ((alert.runbook_url, "Runbook"), (alert.console_url, "Open in console")) if u
    ]
    if links:
        lines.append(" · ".join(links))
    fields = [{"type": "mrkdwn", "text": f"*Severity*\n{escape(alert.severity)}"}]
    fields += [
        {"type": "mrkdwn", "text": clip(f"*{label}*\n`{escape(alert.labels[key])}`", FIELD_MAX)}
        for label, key in FIELDS
        if alert.labels.get(key)
    ]
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": clip("\n".join(lines), SECTION_MAX)},
        "fields": fields,
    }


def message(spec: ReceiverSpec, notification: Notification) -> dict[str, Any]:
    """The Slack message object: `text` fallback plus header, one section per alert, and context."""
    tag, title = status_tag(notification), title_of(notification)
    shown = notification.alerts[:MAX_ALERT_SECTIONS]
    hidden = len(notification.alerts) - len(shown) + notification.truncated_alerts
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(f"{tag} {title}", HEADER_MAX), "emoji": True},
        }
    ]
    blocks += [alert_section(a) for a in shown]
    group = " ".join(f"`{escape(k)}={escape(v)}`" for k, v in sorted(notification.group_labels.items()))
    context = [f"*{escape(notification.source)}* · {escape(notification.environment)}"]
    context.append(f"receiver {escape(notification.receiver or spec.name)}")
    if group:
        context.append(group)
    if hidden:
        context.append(f"…and {hidden} more alert{'s' if hidden != 1 else ''}")
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(" · ".join(context), SECTION_MAX)}]}
    )
    count = len(notification.alerts) + notification.truncated_alerts
    text = f"{tag} {title}" + (f" ({count} alerts)" if count > 1 else "") + f" · {notification.environment}"
    return {"text": text, "blocks": blocks[:MAX_BLOCKS]}


@register("slack")
def render(spec: ReceiverSpec, notification: Notification) -> list[RenderedRequest]:
    return [json_request(message(spec, notification))]
