"""releases: per-instance index, settings, previous version and drift; rollout operations

Revision ID: i16_releases
Revises: i21_join_token_uses
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i16_releases"
down_revision: str | None = "i21_join_token_uses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("module_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("override_env", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("override_args", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("override_user", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("previous_version", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("previous_package_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("applied", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("drift", sa.Boolean(), server_default="0", nullable=False))
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("module_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("paused", sa.Boolean(), server_default="0", nullable=False))
        batch.add_column(sa.Column("rollout", sa.JSON(), nullable=True))
        batch.create_index("ix_operations_module_id", ["module_id"])
    # Instances deployed before: 1, 2, ... within each module, oldest first.
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, module_id FROM instances WHERE module_id IS NOT NULL "
            "ORDER BY module_id, created_at, name"
        )
    ).all()
    counts: dict[str, int] = {}
    for instance_id, module_id in rows:
        counts[module_id] = counts.get(module_id, 0) + 1
        conn.execute(
            sa.text("UPDATE instances SET module_index = :n WHERE id = :id"),
            {"n": counts[module_id], "id": instance_id},
        )


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_index("ix_operations_module_id")
        for column in ("rollout", "paused", "module_id"):
            batch.drop_column(column)
    with op.batch_alter_table("instances") as batch:
        for column in (
            "drift",
            "applied",
            "previous_package_id",
            "previous_version",
            "override_user",
            "override_args",
            "override_env",
            "module_index",
        ):
            batch.drop_column(column)
