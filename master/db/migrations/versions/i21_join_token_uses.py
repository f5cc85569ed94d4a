"""join tokens limited to a number of nodes: max_uses and uses

Revision ID: i21_join_token_uses
Revises: i21_instance_user
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i21_join_token_uses"
down_revision: str | None = "i21_instance_user"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("join_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_uses", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("uses", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("join_tokens", schema=None) as batch_op:
        batch_op.drop_column("uses")
        batch_op.drop_column("max_uses")
