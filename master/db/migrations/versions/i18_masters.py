"""several masters: the masters table; a node's holding master and its ownership epoch

Revision ID: i18_masters
Revises: i16_releases
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i18_masters"
down_revision: str | None = "i16_releases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "masters",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("url", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("status", sa.String(length=16), nullable=False, server_default="online"),
        sa.Column("store", sa.String(length=16), nullable=False, server_default="local"),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
    )
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("master_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("epoch", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("epoch")
        batch.drop_column("master_id")
    op.drop_table("masters")
