"""several masters: one open alert per (rule, target), enforced by the database; the webhook outbox

Revision ID: i18_alert_outbox
Revises: i18_masters
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "i18_alert_outbox"
down_revision: str | None = "i18_peer_secret"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIRING = sa.text("state = 'firing'")


def upgrade() -> None:
    # Duplicates cannot exist with one master; should any, the oldest stays firing.
    op.execute(
        "UPDATE alerts SET state = 'resolved', resolved_at = started_at, duration = 0 "
        "WHERE state = 'firing' AND EXISTS (SELECT 1 FROM alerts AS b WHERE b.state = 'firing' "
        "AND b.rule_id = alerts.rule_id AND b.target_id = alerts.target_id "
        "AND (b.started_at < alerts.started_at "
        "OR (b.started_at = alerts.started_at AND b.id < alerts.id)))"
    )
    op.create_index(
        "uq_alerts_open",
        "alerts",
        ["rule_id", "target_id"],
        unique=True,
        postgresql_where=FIRING,
        sqlite_where=FIRING,
    )
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("claimed_by", sa.String(length=32), nullable=True),
        sa.Column("claimed_until", sa.Float(), nullable=False, server_default="0"),
    )
    op.create_index("ix_alert_outbox_claimed_until", "alert_outbox", ["claimed_until"])


def downgrade() -> None:
    op.drop_index("ix_alert_outbox_claimed_until", table_name="alert_outbox")
    op.drop_table("alert_outbox")
    op.drop_index("uq_alerts_open", table_name="alerts")
