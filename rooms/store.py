"""The durable store: rooms, the update log and snapshots, in SQLite or PostgreSQL.

One implementation serves both databases through SQLAlchemy's async engine; the database is
chosen by URL. ``Store`` is the interface the rest of the room domain depends on.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Protocol

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, and_, delete, event, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rooms import tables
from rooms.types import (
    EntryKind,
    LoadedHistory,
    LogEntry,
    RoomInfo,
    RoomKind,
    Round,
    RoundState,
    Snapshot,
    TimelineEvent,
)

MIGRATIONS = Path(__file__).parent / "migrations"
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Store(Protocol):
    """What rooms need from durable storage."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def create_room(self, info: RoomInfo, seed: list[LogEntry]) -> None: ...
    async def get_room(self, room_id: str) -> RoomInfo | None: ...
    async def append(self, entries: list[LogEntry], snapshots: list[Snapshot]) -> None: ...
    async def append_numbered(
        self, entries: list[LogEntry], snapshots: list[Snapshot]
    ) -> list[LogEntry]: ...
    async def heads(self, keys: list[str]) -> dict[str, int]: ...
    async def updates_until(
        self, room_id: str, after_seq: int, until_us: int | None, limit: int | None = None
    ) -> list[LogEntry]: ...
    async def load(self, room_id: str) -> LoadedHistory: ...
    async def history(self, room_id: str) -> list[LogEntry]: ...
    async def get_round(self, room_id: str) -> Round: ...
    async def save_round(self, room_id: str, round_: Round) -> None: ...
    async def live_rounds_with_deadline(self) -> list[tuple[str, int]]: ...
    async def append_event(self, event: TimelineEvent) -> None: ...
    async def events(
        self, room_id: str, types: tuple[str, ...], limit: int
    ) -> list[TimelineEvent]: ...


class SqlStore:
    """``Store`` on SQLAlchemy: ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``.

    ``schema`` (PostgreSQL only) puts every table in that schema, created if missing, so that
    several deployments or test runs can share one database.
    """

    def __init__(self, url: str, schema: str = "") -> None:
        if schema and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid database schema name {schema!r}")
        self.url = url
        self.schema = schema
        self.is_sqlite = url.startswith("sqlite")
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store not started")
        return self._engine

    async def start(self) -> None:
        kwargs: dict[str, Any] = {}
        if not self.is_sqlite and self.schema:
            kwargs["connect_args"] = {"server_settings": {"search_path": self.schema}}
        self._engine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        elif self.schema:
            async with self._engine.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
        async with self._engine.begin() as conn:
            await conn.run_sync(_upgrade_to_head)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def create_room(self, info: RoomInfo, seed: list[LogEntry]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(tables.rooms).values(
                    id=info.id,
                    kind=info.kind.value,
                    language=info.language,
                    created_us=info.created_us,
                    seeded_from=info.seeded_from,
                    epoch=info.epoch,
                    time_limit_s=info.time_limit_s,
                )
            )
            if seed:
                await conn.execute(insert(tables.updates), [_entry_row(e) for e in seed])

    async def get_room(self, room_id: str) -> RoomInfo | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(tables.rooms).where(tables.rooms.c.id == room_id))
            ).first()
        if row is None:
            return None
        return RoomInfo(
            id=row.id,
            kind=RoomKind(row.kind),
            language=row.language,
            created_us=row.created_us,
            seeded_from=row.seeded_from,
            epoch=row.epoch,
            time_limit_s=row.time_limit_s,
        )

    async def append(self, entries: list[LogEntry], snapshots: list[Snapshot]) -> None:
        """Write a group of entries and snapshots in one transaction.

        This is the hot path of the store (every keystroke passes through it), so entries go
        to the driver's own ``executemany`` as the tuples they are: SQLAlchemy's per-row
        parameter processing cost more than the insert itself.
        """
        sql = _SQLITE_INSERTS if self.is_sqlite else _POSTGRES_INSERTS
        async with self.engine.begin() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            # SQLAlchemy begins its own transaction only on its own first statement; asyncpg
            # needs one opened explicitly or each executemany commits alone.
            transaction = driver.transaction() if not self.is_sqlite else contextlib.nullcontext()
            async with transaction:
                if entries:
                    await driver.executemany(sql["updates"], entries)
                if snapshots:
                    await driver.executemany(
                        sql["snapshots"], [(s.room_id, s.seq, s.at_us, s.state) for s in snapshots]
                    )

    async def append_numbered(
        self, entries: list[LogEntry], snapshots: list[Snapshot]
    ) -> list[LogEntry]:
        """Cluster mode (PostgreSQL): write entries numbered after the newest of their
        document, whichever node wrote that, in one transaction; returns them numbered.

        A transaction-scoped advisory lock per document (taken in key order, so two nodes
        cannot deadlock) makes the numbers unique and gapless; it is held only for the
        commit. Snapshots carry their own number and are idempotent.
        """
        if self.is_sqlite:
            raise RuntimeError("numbering at commit is for a shared PostgreSQL log")
        keys = sorted({e.room_id for e in entries})
        numbered: list[LogEntry] = []
        async with self.engine.begin() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            async with driver.transaction():
                await driver.execute(_LOCK_DOCUMENTS, keys)
                heads = dict(await driver.fetch(_HEADS, keys)) if keys else {}
                for e in entries:
                    seq = heads.get(e.room_id, 0) + 1
                    heads[e.room_id] = seq
                    numbered.append(LogEntry(e.room_id, seq, e.at_us, e.author, e.kind, e.update))
                if numbered:
                    await driver.executemany(_POSTGRES_INSERTS["updates"], numbered)
                if snapshots:
                    await driver.executemany(
                        _POSTGRES_INSERTS["snapshots"],
                        [(s.room_id, s.seq, s.at_us, s.state) for s in snapshots],
                    )
        return numbered

    async def heads(self, keys: list[str]) -> dict[str, int]:
        """The newest sequence number of each document in ``keys`` that has any."""
        if not keys:
            return {}
        u = tables.updates.c
        query = select(u.room_id, func.max(u.seq)).where(u.room_id.in_(keys)).group_by(u.room_id)
        async with self.engine.connect() as conn:
            return {row[0]: row[1] for row in await conn.execute(query)}

    async def load(self, room_id: str) -> LoadedHistory:
        """The newest snapshot of a room and every update logged after it."""
        snap_t = tables.snapshots
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(snap_t)
                    .where(snap_t.c.room_id == room_id)
                    .order_by(snap_t.c.seq.desc())
                    .limit(1)
                )
            ).first()
            snapshot = Snapshot(room_id, row.seq, row.at_us, row.state) if row else None
            after = snapshot.seq if snapshot else 0
            tail = await self._entries(conn, room_id, after)
        return LoadedHistory(snapshot, tail)

    async def history(self, room_id: str) -> list[LogEntry]:
        """Every update of a room, in order."""
        async with self.engine.connect() as conn:
            return await self._entries(conn, room_id, 0)

    async def get_round(self, room_id: str) -> Round:
        r = tables.rooms.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        r.round_state, r.started_us, r.deadline_us, r.ended_us, r.ended_reason
                    ).where(r.id == room_id)
                )
            ).first()
        if row is None:
            return Round()
        return Round(RoundState(row[0]), row[1], row[2], row[3], row[4])

    async def save_round(self, room_id: str, round_: Round) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(tables.rooms)
                .where(tables.rooms.c.id == room_id)
                .values(
                    round_state=round_.state.value,
                    started_us=round_.started_us,
                    deadline_us=round_.deadline_us,
                    ended_us=round_.ended_us,
                    ended_reason=round_.ended_reason,
                )
            )

    async def live_rounds_with_deadline(self) -> list[tuple[str, int]]:
        """(room id, deadline) of every running round that has a deadline."""
        r = tables.rooms.c
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(r.id, r.deadline_us).where(
                    r.round_state == RoundState.LIVE.value, r.deadline_us.is_not(None)
                )
            )
            return [(row[0], row[1]) for row in result]

    async def append_event(self, event: TimelineEvent) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(tables.events).values(
                    room_id=event.room_id,
                    at_us=event.at_us,
                    author=event.author,
                    type=event.type,
                    data=orjson.dumps(event.data).decode(),
                )
            )

    async def events(
        self, room_id: str, types: tuple[str, ...] = (), limit: int = 1000
    ) -> list[TimelineEvent]:
        """The newest ``limit`` events of a room (of ``types`` if given), oldest first."""
        e = tables.events.c
        query = select(e.at_us, e.author, e.type, e.data).where(e.room_id == room_id)
        if types:
            query = query.where(e.type.in_(types))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(e.id.desc()).limit(limit))).all()
        return [
            TimelineEvent(room_id, row[0], row[1], row[2], orjson.loads(row[3]))
            for row in reversed(rows)
        ]

    # -- reading the recording back (rooms/timeline.py) ---------------------------------------

    async def updates_between(
        self, room_id: str, start_us: int, end_us: int, after_seq: int, limit: int
    ) -> list[LogEntry]:
        """Updates logged from ``start_us`` to ``end_us`` after ``after_seq``, in order."""
        u = tables.updates.c
        query = (
            select(u.seq, u.at_us, u.author, u.kind, u.data)
            .where(u.room_id == room_id, u.seq > after_seq)
            .where(u.at_us >= start_us, u.at_us <= end_us)
            .order_by(u.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_log_entry(room_id, r) for r in await conn.execute(query)]

    async def updates_until(
        self, room_id: str, after_seq: int, until_us: int | None, limit: int | None = None
    ) -> list[LogEntry]:
        """Updates after ``after_seq`` logged up to ``until_us`` (all when None), in order."""
        u = tables.updates.c
        query = (
            select(u.seq, u.at_us, u.author, u.kind, u.data)
            .where(u.room_id == room_id, u.seq > after_seq)
            .order_by(u.seq)
        )
        if until_us is not None:
            query = query.where(u.at_us <= until_us)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return [_log_entry(room_id, r) for r in await conn.execute(query)]

    async def history_at(self, room_id: str, at_us: int) -> LoadedHistory:
        """What rebuilds a room's document as it was at ``at_us``: the newest snapshot taken
        by then, and the updates after it logged by then (one connection, two queries)."""
        s, u = tables.snapshots.c, tables.updates.c
        snapshot_query = (
            select(s.seq, s.at_us, s.state)
            .where(s.room_id == room_id, s.at_us <= at_us)
            .order_by(s.at_us.desc(), s.seq.desc())  # by ix_snapshots_time
            .limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(snapshot_query)).first()
            snapshot = Snapshot(room_id, row.seq, row.at_us, row.state) if row else None
            after = snapshot.seq if snapshot else 0
            # Every update after the next snapshot came after that snapshot, which is later
            # than at_us: bounding by it spares a scan of the rest of the log (at_us has no
            # index; the hot path writes none).
            bound = (
                await conn.execute(
                    select(func.min(s.seq)).where(s.room_id == room_id, s.seq > after)
                )
            ).scalar()
            tail_query = (
                select(u.seq, u.at_us, u.author, u.kind, u.data)
                .where(u.room_id == room_id, u.seq > after, u.at_us <= at_us)
                .order_by(u.seq)
            )
            if bound is not None:
                tail_query = tail_query.where(u.seq <= bound)
            tail = [_log_entry(room_id, r) for r in await conn.execute(tail_query)]
        return LoadedHistory(snapshot, tail)

    async def events_between(
        self, room_id: str, start_us: int, end_us: int, after: tuple[int, int], limit: int
    ) -> list[tuple[int, TimelineEvent]]:
        """(id, event) of events from ``start_us`` to ``end_us`` after ``(at_us, id)``, in
        time order."""
        e = tables.events.c
        after_at, after_id = after
        query = (
            select(e.id, e.at_us, e.author, e.type, e.data)
            .where(e.room_id == room_id, e.at_us >= start_us, e.at_us <= end_us)
            .where(or_(e.at_us > after_at, and_(e.at_us == after_at, e.id > after_id)))
            .order_by(e.at_us, e.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(row.id, _event(room_id, row)) for row in rows]

    # -- assessments (rooms/assessments.py) ---------------------------------------------------

    async def save_assessments(self, rows: list[dict[str, Any]]) -> None:
        """Store a loaded set in one transaction, replacing earlier versions of the same ids."""
        a = tables.assessments
        async with self.engine.begin() as conn:
            await conn.execute(delete(a).where(a.c.id.in_([row["id"] for row in rows])))
            await conn.execute(insert(a), rows)

    async def assessments(self) -> list[dict[str, Any]]:
        """Every stored assessment, its definition as JSON text."""
        a = tables.assessments.c
        query = select(a.id, a.kind, a.title, a.source, a.definition, a.loaded_us).order_by(a.id)
        async with self.engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def seeds(self, limit: int) -> list[tuple[str, str | None, bytes]]:
        """(room id, seeded from, first update: the starter files) of the newest rooms."""
        r, u = tables.rooms.c, tables.updates.c
        query = (
            select(r.id, r.seeded_from, u.data)
            .join(tables.updates, and_(u.room_id == r.id, u.seq == 1))
            .order_by(r.created_us.desc())
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [(row.id, row.seeded_from, row.data) for row in await conn.execute(query)]

    async def delete_room(self, room_id: str) -> bool:
        """Remove a room and everything recorded of it (its notes too); False if unknown."""
        keys = (room_id, f"{room_id}:notes")
        async with self.engine.begin() as conn:
            await conn.execute(delete(tables.updates).where(tables.updates.c.room_id.in_(keys)))
            await conn.execute(delete(tables.snapshots).where(tables.snapshots.c.room_id.in_(keys)))
            await conn.execute(delete(tables.events).where(tables.events.c.room_id == room_id))
            result = await conn.execute(delete(tables.rooms).where(tables.rooms.c.id == room_id))
        if self.is_sqlite:
            # Old page versions stay in the write-ahead log until a checkpoint.
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return bool(result.rowcount)

    @staticmethod
    async def _entries(conn: Any, room_id: str, after_seq: int) -> list[LogEntry]:
        upd = tables.updates
        result = await conn.execute(
            select(upd.c.seq, upd.c.at_us, upd.c.author, upd.c.kind, upd.c.data)
            .where(upd.c.room_id == room_id, upd.c.seq > after_seq)
            .order_by(upd.c.seq)
        )
        return [_log_entry(room_id, r) for r in result]


# Idempotent, so that retrying a batch whose commit succeeded but whose reply was lost cannot
# wedge the writer on a duplicate key.
_SQLITE_INSERTS = {
    "updates": "INSERT OR IGNORE INTO updates (room_id, seq, at_us, author, kind, data) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "snapshots": "INSERT OR IGNORE INTO snapshots (room_id, seq, at_us, state) VALUES (?, ?, ?, ?)",
}
_POSTGRES_INSERTS = {
    "updates": "INSERT INTO updates (room_id, seq, at_us, author, kind, data) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    "snapshots": "INSERT INTO snapshots (room_id, seq, at_us, state) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT DO NOTHING",
}

# Cluster mode: one writer per document at a time, for the length of a commit.
# One round trip for every document of a commit, locked in byte order of the keys (the
# subquery's order, which PostgreSQL keeps for a plain projection, whatever the database's
# collation), so two nodes cannot deadlock.
_LOCK_DOCUMENTS = (
    "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))"
    ' FROM (SELECT k FROM unnest($1::text[]) AS k ORDER BY k COLLATE "C") AS ordered'
)
_HEADS = "SELECT room_id, max(seq) FROM updates WHERE room_id = ANY($1::text[]) GROUP BY room_id"


def _event(room_id: str, row: Any) -> TimelineEvent:
    return TimelineEvent(room_id, row.at_us, row.author, row.type, orjson.loads(row.data))


def _log_entry(room_id: str, row: Any) -> LogEntry:
    return LogEntry(room_id, row.seq, row.at_us, row.author, EntryKind(row.kind), row.data)


def _entry_row(entry: LogEntry) -> dict[str, Any]:
    return {
        "room_id": entry.room_id,
        "seq": entry.seq,
        "at_us": entry.at_us,
        "author": entry.author,
        "kind": entry.kind.value,
        "data": entry.update,
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; NORMAL keeps commits durable against a
    # process crash (the case the SIGKILL test proves) without an fsync per commit.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    # A deleted room's content is overwritten, not left in free pages (see delete_room).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _upgrade_to_head(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"
