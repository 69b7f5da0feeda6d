"""The relational schema of the durable store (SQLAlchemy Core; migrations in ``migrations/``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, MetaData, String, Table

metadata = MetaData()

rooms = Table(
    "rooms",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("language", String(32), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("seeded_from", String(64), nullable=True),
    Column("epoch", String(64), nullable=False),
)

updates = Table(
    "updates",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at_us", BigInteger, nullable=False),
    Column("author", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at_us", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),
)

Index("ix_updates_room_at", updates.c.room_id, updates.c.at_us)
