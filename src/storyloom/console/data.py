"""What the console's pages read, straight from the services and tables (one read connection per page).

The shapes are the API's (the same service functions back `/api/...`), so a page and the JSON an operator
scripts against agree; receiver secrets are redacted by the same `routes_view`. Reads only: nothing here
changes state or sends anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from storyloom.alerting.reads import routes_for_alert
from storyloom.domain.readable import readable_map
from storyloom.runtime import Runtime
from storyloom.services import alerts as alert_service
from storyloom.services import catalog, demo_inbox, plans
from storyloom.services import deliveries as delivery_service
from storyloom.services import obligations as obligation_service
from storyloom.services import silences as silence_service
from storyloom.store import set_aside
from storyloom.store.tables import alerts
from storyloom.store.tables import plans as plan_table

DELIVERY_STATUSES = delivery_service.STATUSES


@dataclass(frozen=True)
class Who:
    """Agent, persona and plan names by id, so every row can say who and what it belongs to."""

    agents: dict[str, dict[str, Any]]
    personas: dict[str, dict[str, Any]]
    plans: dict[str, str] = field(default_factory=dict)

    def plan(self, plan_id: str | None) -> str:
        return self.plans.get(plan_id or "") or (plan_id or "—")

    def named(self, text: str | None) -> str:
        """`text` with every known persona, agent and plan id replaced by its name (ids in descriptions)."""
        shown = str(text or "")
        names = [
            *((pid, str(p["name"])) for pid, p in self.personas.items()),
            *((aid, str(a["name"])) for aid, a in self.agents.items()),
            *self.plans.items(),
        ]
        for ident, name in sorted(names, key=lambda pair: -len(pair[0])):
            if ident and name and ident in shown:
                shown = re.sub(rf"(?<![\w-]){re.escape(ident)}(?![\w-])", name, shown)
        return shown

    def agent(self, agent_id: str | None) -> str:
        row = self.agents.get(agent_id or "")
        return str(row["name"]) if row else (agent_id or "—")

    def persona(self, persona_id: str | None) -> str:
        row = self.personas.get(persona_id or "")
        return str(row["name"]) if row else (persona_id or "—")

    def agent_for_persona(self, persona_id: str | None, fallback: str | None = None) -> str | None:
        """The first agent acting for `persona_id` (the default actor for its obligations)."""
        for agent_id, row in self.agents.items():
            if row.get("persona_id") == persona_id:
                return agent_id
        return fallback

    def persona_of_agent(self, agent_id: str | None) -> str | None:
        row = self.agents.get(agent_id or "")
        return row["persona_id"] if row else None


@dataclass
class Reader:
    """One page's reads over one connection."""

    conn: Connection
    rt: Runtime
    now: datetime
    _who: Who | None = field(default=None, init=False)

    def who(self) -> Who:
        if self._who is None:
            self._who = Who(
                agents={a["id"]: a for a in catalog.list_agents(self.conn)},
                personas={p["id"]: p for p in catalog.list_personas(self.conn)},
                plans={r.id: r.name for r in self.conn.execute(select(plan_table.c.id, plan_table.c.name))},
            )
        return self._who

    # --- plans ---------------------------------------------------------------------------------------

    def plans(self) -> list[dict[str, Any]]:
        return plans.list_plans(self.conn)

    def plan(self, plan_id: str) -> dict[str, Any]:
        return plans.plan_detail(self.conn, plan_id)

    def backlog(self, plan_id: str) -> list[dict[str, Any]]:
        return plans.list_backlog(self.conn, plan_id)

    def actions(self, plan_id: str) -> list[dict[str, Any]]:
        return plans.list_actions(self.conn, plan_id)

    def roster(self, plan_id: str) -> dict[str, Any]:
        return plans.roster(self.conn, plan_id)

    def obligations(self, plan_id: str, status: str | None, page: int, page_size: int) -> dict[str, Any]:
        return obligation_service.list_obligations(self.conn, plan_id, status, page, page_size)

    # --- alerting ------------------------------------------------------------------------------------

    def alerts(self, **filters: Any) -> list[dict[str, Any]]:
        clean = {k: v for k, v in filters.items() if v not in (None, "")}
        return alert_service.list_alerts(self.conn, self.rt.alerting, self.now, **clean)

    def alert(self, fingerprint: str) -> dict[str, Any]:
        return alert_service.get_alert(self.conn, self.rt.alerting, fingerprint, self.now)

    def sent_to(self, fingerprint: str) -> list[str]:
        """The receivers of the aggregation groups the alert joined (where its notifications go)."""
        return routes_for_alert(self.conn, fingerprint)

    def silences(self) -> list[dict[str, Any]]:
        return silence_service.list_silences(self.conn, self.now)

    def routes(self) -> dict[str, Any]:
        return alert_service.routes_view(self.rt.alerting)

    def set_aside(self) -> list[dict[str, Any]]:
        """Rows the background passes could not process (newest first)."""
        return set_aside.list_set_aside(self.conn, limit=50)

    def deliveries(self, receiver: str = "", status: str = "", limit: int = 300) -> list[dict[str, Any]]:
        """Newest first with their attempt logs, plus the alerts each carried (to name their owners)."""
        rows = delivery_service.list_deliveries(
            self.conn, receiver=receiver or None, status=status or None, limit=limit
        )
        fingerprints = {fp for row in rows for fp in row["fingerprints"]}
        carried: dict[str, dict[str, Any]] = {}
        if fingerprints:
            found = self.conn.execute(
                select(alerts.c.fingerprint, alerts.c.alert_id, alerts.c.labels).where(
                    alerts.c.fingerprint.in_(fingerprints)
                )
            )
            carried = {
                r.fingerprint: {"alert_id": r.alert_id, "labels": readable_map(r.labels, "labels")[0]}
                for r in found
            }
        for row in rows:
            row["alerts"] = [
                {"fingerprint": fp, **carried.get(fp, {"alert_id": "?", "labels": {}})}
                for fp in row["fingerprints"]
            ]
        return rows

    def inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        """What the built-in demo receiver got, newest first, with its signature verdict."""
        return demo_inbox.latest(self.conn, limit)
