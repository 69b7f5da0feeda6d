"""round lifecycle columns and the control-plane event timeline

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(sa.Column("time_limit_s", sa.Integer, nullable=True))
        batch.add_column(
            sa.Column("round_state", sa.String(16), nullable=False, server_default="scheduled")
        )
        batch.add_column(sa.Column("started_us", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("deadline_us", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("ended_us", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("ended_reason", sa.String(32), nullable=True))
    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_events_room", "events", ["room_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_room", table_name="events")
    op.drop_table("events")
    with op.batch_alter_table("rooms") as batch:
        for column in (
            "ended_reason",
            "ended_us",
            "deadline_us",
            "started_us",
            "round_state",
            "time_limit_s",
        ):
            batch.drop_column(column)
