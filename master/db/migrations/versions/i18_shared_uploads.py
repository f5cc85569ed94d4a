"""several masters: a resumable upload's S3 multipart state and its current writer

Revision ID: i18_shared_uploads
Revises: i18_masters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i18_shared_uploads"
down_revision: str | None = "i18_leader"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("package_uploads") as batch:
        batch.add_column(sa.Column("s3_upload", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("parts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tail_key", sa.String(length=255), nullable=True))
        batch.add_column(
            sa.Column("tail_size", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("last_part", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("writer", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.Float(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("package_uploads") as batch:
        for name in ("lease_until", "writer", "last_part", "tail_size", "tail_key"):
            batch.drop_column(name)
        for name in ("parts", "s3_upload"):
            batch.drop_column(name)
