"""alerts.expires_at: when an ingested alert resolves unless its client sends it again

Revision ID: 0003_alert_expiry
Revises: 0002_console_sessions
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storyloom.store.tables

revision: str = "0003_alert_expiry"
down_revision: str | None = "0002_console_sessions"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", storyloom.store.tables.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index("ix_alerts_status_expires", ["status", "expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_status_expires")
        batch_op.drop_column("expires_at")
