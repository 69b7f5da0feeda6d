"""The relational schema of the durable store (SQLAlchemy Core; migrations in ``migrations/``)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

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
    Column("time_limit_s", Integer, nullable=True),
    Column("round_state", String(16), nullable=False, server_default="scheduled"),
    Column("started_us", BigInteger, nullable=True),
    Column("deadline_us", BigInteger, nullable=True),
    Column("ended_us", BigInteger, nullable=True),
    Column("ended_reason", String(32), nullable=True),
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
    # One B-tree keyed by (room, seq) instead of a rowid table plus an index: half the pages
    # written per commit.
    sqlite_with_rowid=False,
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("room_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at_us", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)
Index("ix_snapshots_time", snapshots.c.room_id, snapshots.c.at_us)

events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("room_id", String(64), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("author", String(64), nullable=False),
    Column("type", String(32), nullable=False),
    Column("data", Text, nullable=False),
)
Index("ix_events_room", events.c.room_id, events.c.id)

assessments = Table(
    "assessments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("source", String(300), nullable=False),
    Column("definition", Text, nullable=False),  # JSON, hidden tests included: server only
    Column("loaded_us", BigInteger, nullable=False),
)
Index("ix_snapshots_time", snapshots.c.room_id, snapshots.c.at_us)

candidates = Table(
    "candidates",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("pipeline_id", String(64), nullable=False),
    Column("name", String(80), nullable=False),
    Column("email", String(320), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    UniqueConstraint("pipeline_id", "email", name="uq_candidates_email"),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("candidate_id", String(64), nullable=False),
    Column("pipeline_id", String(64), nullable=False),
    Column("stage_id", String(64), nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("used_us", BigInteger, nullable=True),  # set once: a link works one time
    Column("room_id", String(64), nullable=True),
    Column("created_us", BigInteger, nullable=False),
)
Index("ix_invitations_room", invitations.c.room_id)

stage_results = Table(
    "stage_results",
    metadata,
    Column("candidate_id", String(64), primary_key=True),
    Column("stage_id", String(64), primary_key=True),
    Column("pipeline_id", String(64), nullable=False),
    Column("room_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),  # started, submitted, scored, advanced, ...
    Column("score", Float, nullable=True),
    Column("details", Text, nullable=False),  # JSON
    Column("updated_us", BigInteger, nullable=False),
)
