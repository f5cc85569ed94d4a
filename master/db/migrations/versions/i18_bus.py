"""several masters: commands routed through another master; broadcast events for every master

Revision ID: i18_bus
Revises: i18_masters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i18_bus"
down_revision: str | None = "i18_masters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "commands",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("node_id", sa.String(length=32), nullable=False),
        sa.Column("origin", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_commands_target", "commands", ["target"])
    op.create_table(
        "cluster_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("origin", sa.String(length=32), nullable=False),
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_cluster_events_origin_seq", "cluster_events", ["origin", "seq"])


def downgrade() -> None:
    op.drop_index("ix_cluster_events_origin_seq", "cluster_events")
    op.drop_table("cluster_events")
    op.drop_index("ix_commands_target", "commands")
    op.drop_table("commands")
