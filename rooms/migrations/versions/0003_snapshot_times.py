"""an index of snapshots by time, for the state of a room at any moment

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Snapshots are written every few hundred updates, so the index costs nothing on the hot
    # path; without it, finding the newest snapshot before a time reads every newer one.
    op.create_index("ix_snapshots_time", "snapshots", ["room_id", "at_us"])


def downgrade() -> None:
    op.drop_index("ix_snapshots_time", "snapshots")
