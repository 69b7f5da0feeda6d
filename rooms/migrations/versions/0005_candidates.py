"""the hiring funnel: candidates, their invitations to stages, and stage results

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "candidates",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("pipeline_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("pipeline_id", "email", name="uq_candidates_email"),
    )
    op.create_table(
        "invitations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("candidate_id", sa.String(64), nullable=False),
        sa.Column("pipeline_id", sa.String(64), nullable=False),
        sa.Column("stage_id", sa.String(64), nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Column("used_us", sa.BigInteger, nullable=True),
        sa.Column("room_id", sa.String(64), nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_invitations_room", "invitations", ["room_id"])
    op.create_table(
        "stage_results",
        sa.Column("candidate_id", sa.String(64), primary_key=True),
        sa.Column("stage_id", sa.String(64), primary_key=True),
        sa.Column("pipeline_id", sa.String(64), nullable=False),
        sa.Column("room_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stage_results")
    op.drop_index("ix_invitations_room", "invitations")
    op.drop_table("invitations")
    op.drop_table("candidates")
