"""Planner templates in the database: seeded (and versioned) from the packaged template files."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from storyloom.domain.phases import PHASES
from storyloom.pipeline.prompts import TemplateNotFound, load_template
from storyloom.store.tables import planner_templates


def seed_templates(conn: Connection, now: datetime) -> list[str]:
    """Insert a new active version of each template whose packaged text differs from the latest one."""
    seeded = []
    for spec in PHASES.values():
        try:
            body = load_template(spec.template_id)
        except TemplateNotFound:
            continue
        latest = conn.execute(
            select(planner_templates.c.version, planner_templates.c.body)
            .where(planner_templates.c.template_id == spec.template_id)
            .order_by(planner_templates.c.version.desc())
            .limit(1)
        ).first()
        if latest is not None and latest.body == body:
            continue
        conn.execute(
            update(planner_templates)
            .where(planner_templates.c.template_id == spec.template_id)
            .values(active=False)
        )
        conn.execute(
            insert(planner_templates).values(
                template_id=spec.template_id,
                version=(latest.version if latest else 0) + 1,
                body=body,
                active=True,
                created_at=now,
            )
        )
        seeded.append(spec.template_id)
    return seeded
