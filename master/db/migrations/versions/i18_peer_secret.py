"""several masters: cluster settings, with the secret masters present to one another

Revision ID: i18_peer_secret
Revises: i18_masters
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i18_peer_secret"
down_revision: str | None = "i18_bus"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "cluster_settings",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    # Made once, here: migrations run under an advisory lock, so every master reads the same one.
    op.bulk_insert(table, [{"name": "peer_secret", "value": secrets.token_urlsafe(32)}])


def downgrade() -> None:
    op.drop_table("cluster_settings")
