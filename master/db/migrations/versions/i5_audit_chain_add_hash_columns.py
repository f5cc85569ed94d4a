"""audit hash chain: prev_hash and hash on every audit row

Rows written before this revision are chained here, in id order, so `verify` covers them too.

Revision ID: i5_audit_chain
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from master.services.audit_chain import GENESIS, normalize_detail, row_hash

revision: str = "i5_audit_chain"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("prev_hash", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("hash", sa.String(length=64), nullable=False, server_default="")
        )
    audit = sa.table(
        "audit_log",
        sa.column("id", sa.Integer),
        sa.column("ts", sa.Float),
        sa.column("actor", sa.String),
        sa.column("action", sa.String),
        sa.column("target", sa.String),
        sa.column("result", sa.String),
        sa.column("source_ip", sa.String),
        sa.column("detail", sa.JSON),
        sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )
    bind = op.get_bind()
    prev = GENESIS
    rows = bind.execute(sa.select(audit).order_by(audit.c.id)).mappings().all()
    for row in rows:
        fields = dict(row)
        fields["detail"] = normalize_detail(fields["detail"])
        digest = row_hash(prev, fields)
        bind.execute(
            audit.update()
            .where(audit.c.id == row["id"])
            .values(detail=fields["detail"], prev_hash=prev, hash=digest)
        )
        prev = digest


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
