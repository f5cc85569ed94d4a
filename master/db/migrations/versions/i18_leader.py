"""several masters: the leader (each master's lease session), the master driving an operation,
login failures shared between masters

Revision ID: i18_leader
Revises: i18_masters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i18_leader"
down_revision: str | None = "i18_alert_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("masters") as batch:
        batch.add_column(sa.Column("session_pid", sa.Integer(), nullable=True))
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("master_id", sa.String(length=32), nullable=True))
    op.create_table(
        "login_failures",
        sa.Column("source", sa.String(length=64), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_failure", sa.Float(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("master_id")
    with op.batch_alter_table("masters") as batch:
        batch.drop_column("session_pid")
