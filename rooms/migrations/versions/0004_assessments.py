"""assessments loaded from files: multiple-choice tests, coding tasks, pipelines

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assessments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("loaded_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("assessments")
