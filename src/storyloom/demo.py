"""`storyloom run --demo`: a persona, its agent and one plan (the demo receiver is in `demo_receiver.py`)."""

from __future__ import annotations

from sqlalchemy import func, select

from storyloom.runtime import Runtime
from storyloom.services.catalog import create_agent, create_persona
from storyloom.services.plans import PlanRequest, create_plan
from storyloom.services.tokens import create_token
from storyloom.store.tables import plans

DEMO_PREMISE = (
    "A lighthouse keeper on a drowned coast discovers that the lamp's beam writes the future onto the fog, "
    "and the harbour guild will do anything to read it first."
)


def seed_demo(rt: Runtime) -> str:
    """Create the demo persona, agent and plan (once per database); returns a fresh admin login token."""
    now = rt.clock.now()
    with rt.db.begin() as conn:
        token, _ = create_token(conn, name="demo-admin", role="admin", agent_ids=[], now=now)
        if conn.execute(select(func.count()).select_from(plans)).scalar():
            return token
        persona = create_persona(
            conn,
            name="Mara Quill",
            kind="author",
            summary="Author persona of the demo: literary, patient, fond of weather.",
            now=now,
        )
        agent = create_agent(
            conn,
            name="Mara's planning agent",
            persona_id=persona["id"],
            provider="offline",
            model="storyloom-offline-1",
            now=now,
        )
        create_plan(
            conn,
            PlanRequest(
                name="The Fog Ledger",
                premise=DEMO_PREMISE,
                persona_id=persona["id"],
                agent_id=agent["id"],
                project_title="The Fog Ledger",
            ),
            default_provider="offline",
            default_model="storyloom-offline-1",
            max_premise_chars=rt.config.pipeline.max_premise_chars,
            now=now,
        )
    return token
