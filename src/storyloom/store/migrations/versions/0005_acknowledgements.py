"""alerts.acknowledged_by/_note/_at: who is on a firing alert, with a note

Revision ID: 0005_acknowledgements
Revises: 0004_set_aside
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storyloom.store.tables

revision: str = "0005_acknowledgements"
down_revision: str | None = "0004_set_aside"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acknowledged_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("acknowledged_note", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("acknowledged_at", storyloom.store.tables.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("acknowledged_at")
        batch_op.drop_column("acknowledged_note")
        batch_op.drop_column("acknowledged_by")
