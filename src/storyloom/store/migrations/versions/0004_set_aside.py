"""set_aside: rows a background pass could not process, kept with their error

Revision ID: 0004_set_aside
Revises: 0003_alert_expiry
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storyloom.store.tables

revision: str = "0004_set_aside"
down_revision: str | None = "0003_alert_expiry"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "set_aside",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pass_name", sa.String(length=40), nullable=False),
        sa.Column("item", sa.String(length=200), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("at", storyloom.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_set_aside")),
    )
    with op.batch_alter_table("set_aside", schema=None) as batch_op:
        batch_op.create_index("ux_set_aside_pass_item", ["pass_name", "item"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("set_aside", schema=None) as batch_op:
        batch_op.drop_index("ux_set_aside_pass_item")
    op.drop_table("set_aside")
