"""Who is acting: the token's name, id, role, bound agents and the request's source."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("viewer", "operator", "admin")


def role_rank(role: str) -> int:
    return ROLES.index(role)


@dataclass(frozen=True)
class Actor:
    name: str
    actor_id: str
    role: str
    source: str = "api"  # api | cli | console | system
    agent_ids: tuple[str, ...] = field(default_factory=tuple)

    def at_least(self, role: str) -> bool:
        return role_rank(self.role) >= role_rank(role)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def audit_fields(self) -> dict[str, str]:
        """Who did it, as every action-log entry records it (docs/reference/http-api.md)."""
        return {"actor": self.name, "actor_id": self.actor_id, "source": self.source}

    def may_act_as(self, agent_id: str) -> bool:
        """A token bound to agents may act only as those agents."""
        return not self.agent_ids or agent_id in self.agent_ids


SYSTEM = Actor(name="storyloom", actor_id="system", role="admin", source="system")
