"""operations (batch start/stop of a system); instance health detail and adoption spec

Revision ID: i9_operations
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i9_operations"
down_revision: str | None = "i3_package_uploads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("system_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("ready_timeout", sa.Float(), nullable=True),
        sa.Column("resumed", sa.Integer(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["system_id"], ["systems.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operations_system_id"), ["system_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_operations_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_operations_created_at"), ["created_at"], unique=False)
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("health_detail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("adoption", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("adoption")
        batch_op.drop_column("health_detail")
    op.drop_table("operations")
